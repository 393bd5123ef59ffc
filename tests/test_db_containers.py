"""Lists, dicts and sets in ``db`` save themselves when changed in place, as in Evennia."""

from __future__ import annotations

import copy
import pickle

import pytest

from evasync import NotPersistableError, create_object, get_object

from ._support import Kettle


def reloaded(rt, obj):
    rt.reload()
    return get_object(obj.id)


def test_appending_to_a_stored_list_saves_it(rt):
    hero = create_object(key="Hero")
    hero.db.items = ["sword"]
    hero.db.items.append("shield")
    hero.db.items += ["lamp"]
    hero.db.items.extend(["rope"])
    hero.db.items[0] = "axe"
    hero.db.items.remove("lamp")
    assert reloaded(rt, hero).db.items == ["axe", "shield", "rope"]


def test_changing_a_stored_dict_and_set_saves_them(rt):
    hero = create_object(key="Hero")
    hero.db.stats = {"str": 10}
    hero.db.stats["dex"] = 12
    hero.db.stats.update(con=8)
    del hero.db.stats["str"]
    hero.db.seen = {"cave"}
    hero.db.seen.add("forest")
    hero.db.seen |= {"tower"}
    hero.db.seen.discard("cave")
    hero = reloaded(rt, hero)
    assert hero.db.stats == {"dex": 12, "con": 8}
    assert hero.db.seen == {"forest", "tower"}


def test_nested_containers_save_the_attribute_they_belong_to(rt):
    hero = create_object(key="Hero")
    hero.db.bags = {"left": ["coin"], "right": ({"gem": [1]},)}
    hero.db.bags["left"].append("key")
    hero.db.bags["right"][0]["gem"].append(2)
    hero.db.bags["new"] = ["plain list"]
    hero.db.bags["new"].append("added later")    # a list put in later saves too
    inner = hero.db.bags["left"]
    hero.db.bags["other"] = 1                    # a change elsewhere keeps `inner` attached
    inner.append("held")
    assert reloaded(rt, hero).db.bags == {"left": ["coin", "key", "held"],
                                          "right": ({"gem": [1, 2]},),
                                          "new": ["plain list", "added later"],
                                          "other": 1}


def test_assigning_stores_a_copy_of_the_callers_list(rt):
    hero = create_object(key="Hero")
    mine = ["a"]
    hero.db.items = mine
    mine.append("not stored")
    assert hero.db.items == ["a"]
    assert reloaded(rt, hero).db.items == ["a"]


def test_copying_an_attribute_to_another_keeps_them_apart(rt):
    hero = create_object(key="Hero")
    hero.db.first = [1]
    hero.db.second = hero.db.first
    hero.db.second.append(2)
    hero = reloaded(rt, hero)
    assert hero.db.first == [1] and hero.db.second == [1, 2]


def test_a_list_of_a_replaced_attribute_no_longer_saves(rt):
    hero = create_object(key="Hero")
    hero.db.items = [1]
    old = hero.db.items
    hero.db.items = [9]
    old.append(2)
    assert reloaded(rt, hero).db.items == [9]


def test_something_unstorable_is_refused_and_not_kept_in_memory(rt):
    hero = create_object(key="Hero")
    hero.db.items = ["sword"]
    with pytest.raises(NotPersistableError, match="attribute 'items'"):
        hero.db.items.append(Kettle())
    assert hero.db.items == ["sword"]
    with pytest.raises(NotPersistableError):
        hero.db.items[0] = Kettle()
    assert hero.db.items == ["sword"]
    assert reloaded(rt, hero).db.items == ["sword"]


def test_stored_containers_are_still_lists_dicts_and_sets(rt):
    hero = create_object(key="Hero")
    hero.db.items, hero.db.stats, hero.db.seen = [1], {"a": 1}, {1}
    assert isinstance(hero.db.items, list) and hero.db.items == [1]
    assert isinstance(hero.db.stats, dict) and isinstance(hero.db.seen, set)
    assert type(copy.deepcopy(hero.db.items)) is list
    assert type(pickle.loads(pickle.dumps(hero.db.stats))) is dict
    assert hero.db.items.pop() == 1 and hero.db.items == []
    assert reloaded(rt, hero).db.items == []
