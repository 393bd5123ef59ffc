"""The store's JSON: every value it accepts comes back equal, with its types."""

from __future__ import annotations

import json
import math
import random

import pytest

from evasync import NotPersistableError
from evasync import _codec
from evasync._codec import dumps, dumps_arguments, dumps_keywords, loads


def _random_value(rng, depth=0):
    scalars = [None, True, False, 0, -7, 2**70, 1.5, -0.0, 1e300, "", "tea", "é\u2028\ud7ff\"\\",
               b"\x00\xffbytes"]
    if depth > 3 or rng.random() < 0.4:
        return rng.choice(scalars)
    kind = rng.choice(["list", "tuple", "dict", "set", "frozenset"])
    items = [_random_value(rng, depth + 1) for _ in range(rng.randrange(4))]
    hashable = [i for i in items if _hashable(i)]
    if kind == "list":
        return items
    if kind == "tuple":
        return tuple(items)
    if kind == "dict":
        return {key: value for key, value in zip(hashable, items)}
    return (set if kind == "set" else frozenset)(hashable)


def _shape(value):
    """The value's types all the way down (a set's members in a fixed order)."""
    if isinstance(value, (list, tuple)):
        return (type(value).__name__, [_shape(item) for item in value])
    if isinstance(value, dict):
        return ("dict", sorted((repr(_shape(k)), repr(_shape(v))) for k, v in value.items()))
    if isinstance(value, (set, frozenset)):
        return (type(value).__name__, sorted(repr(_shape(item)) for item in value))
    return (type(value).__name__, repr(value))


def _hashable(value):
    try:
        hash(value)
    except TypeError:
        return False
    return True


@pytest.mark.parametrize("seed", range(200))
def test_random_values_round_trip_with_their_types(seed):
    value = _random_value(random.Random(seed))
    text = dumps(value, "value")
    json.loads(text)                      # it is plain JSON
    back = loads(text, lambda i: None)
    assert back == value and _shape(back) == _shape(value)


def test_floats_that_json_has_no_number_for_come_back():
    back = loads(dumps([math.inf, -math.inf, math.nan], "x"), lambda i: None)
    assert back[:2] == [math.inf, -math.inf] and math.isnan(back[2])


def test_subclasses_of_plain_types_are_refused_rather_than_changed():
    class Name(str):
        pass

    with pytest.raises(NotPersistableError, match=r"value\[0\] cannot be stored"):
        dumps([Name("x")], "value")


@pytest.mark.parametrize("seed", range(100))
def test_a_tasks_arguments_are_written_exactly_as_dumps_writes_them(seed):
    """``delay(persistent=True)`` writes its arguments through shortcuts for plain scalars:
    the text must be the one ``dumps`` gives, so ``load()`` reads it back the same."""
    rng = random.Random(seed)
    args = tuple(_random_value(rng) for _ in range(rng.randrange(5)))
    kwargs = {f"k{i}": _random_value(rng) for i in range(rng.randrange(4))}
    assert dumps_arguments(args, None) == dumps(list(args), "value")
    assert dumps_keywords(kwargs, None) == dumps(kwargs, "value")


class _Name(str):
    pass


class _Count(int):
    pass


@pytest.mark.parametrize("bad", [_Name("x"), _Count(3), object()])
def test_a_tasks_arguments_refuse_what_dumps_refuses_and_say_which(bad):
    with pytest.raises(NotPersistableError, match=r"argument list of f\[1\] cannot be stored"):
        dumps_arguments((1, bad), _owner("f"))
    with pytest.raises(NotPersistableError, match=r"keyword arguments of f\['b'\] cannot be"):
        dumps_keywords({"a": 1, "b": bad}, _owner("f"))
    assert dumps_keywords({"x": 1}, None) == '{"d":[["x",1]]}'  # the plain name, remembered
    with pytest.raises(NotPersistableError, match=r"keyword arguments of f key 'x' cannot be"):
        dumps_keywords({_Name("x"): 1}, _owner("f"))  # still refused: the text is not the type


def test_keyword_names_made_on_the_fly_are_written_right_without_growing_memory():
    for i in range(_codec._KEY_TEXT_MAX + 100):
        name = f"name_{i}"
        assert dumps_keywords({name: i}, None) == dumps({name: i}, "value")
    assert len(_codec._KEY_TEXT) <= _codec._KEY_TEXT_MAX


def _owner(name):
    def owner():
        pass
    owner.__qualname__ = name
    return owner
