"""mygame: a small game on evasync."""
