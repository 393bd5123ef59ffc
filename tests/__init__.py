"""evasync's unit and real-process tests (a package, so ``tests._support`` can be imported)."""
