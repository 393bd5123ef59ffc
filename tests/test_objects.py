"""Stored game objects: ``create_object``, ``key``, ``dbref``, ``ndb``, ``db`` and ``delete``."""

from __future__ import annotations

import sqlite3

import pytest
from twisted.logger import LogLevel

from evasync import (DefaultCharacter, DefaultObject, NotPersistableError, ObjectDeletedError,
                     create_object, get_object, search_object)

from . import _support
from ._support import Hero, Kettle


# -- create_object -----------------------------------------------------------------------------

def test_create_object_defaults_to_a_character_with_a_generated_key(rt):
    obj = create_object()
    assert type(obj) is DefaultCharacter and isinstance(obj, DefaultObject)
    assert type(obj.id) is int
    assert obj.key == f"DefaultCharacter#{obj.id}" == str(obj)
    assert obj.dbref == f"#{obj.id}"
    assert not obj.deleted


def test_each_object_gets_its_own_id(rt):
    ids = [create_object().id for _ in range(10)]
    assert len(set(ids)) == 10


def test_create_object_with_a_key_and_a_typeclass(rt):
    hero = create_object(Hero, key="Hero")
    assert type(hero) is Hero and hero.key == "Hero"
    by_path = create_object("tests._support.Hero", key="Sidekick")
    assert type(by_path) is Hero


def test_at_object_creation_runs_once_not_again_after_a_reload(rt):
    hero = create_object(Hero, key="Hero")
    assert hero.db.creations == 1
    rt.reload()
    assert get_object(hero.id).db.creations == 1


@pytest.mark.parametrize("typeclass", [Kettle, int, "tests._support.Kettle"])
def test_a_typeclass_must_be_a_default_object_subclass(rt, typeclass):
    with pytest.raises(TypeError, match="subclass of evasync.DefaultObject"):
        create_object(typeclass)


def test_a_typeclass_must_be_importable(rt):
    class Local(DefaultCharacter):
        pass

    with pytest.raises(TypeError, match="importable"):
        create_object(Local)


def test_a_key_must_be_a_string(rt):
    with pytest.raises(TypeError, match="key must be a string"):
        create_object(key=42)


def test_the_key_can_be_changed_and_is_stored(rt):
    obj = create_object(key="kettle")
    obj.key = "teapot"
    rt.reload()
    assert get_object(obj.id).key == "teapot"


def test_get_object_by_id_or_dbref_and_search_by_key(rt):
    obj = create_object(key="Kettle")
    assert get_object(obj.id) is obj and get_object(obj.dbref) is obj
    assert search_object("kettle") == [obj]
    assert search_object("teapot") == []
    with pytest.raises(LookupError):
        get_object(obj.id + 1000)


# -- msg ---------------------------------------------------------------------------------------

def test_msg_reaches_the_objects_listeners_and_nobody_listening_is_fine(rt):
    hero = create_object(key="Hero")
    hero.msg("nobody hears this")
    heard = rt.listen(hero)
    hero.msg("hello\nworld")
    assert heard.take() == ["hello", "world"]


# -- ndb ---------------------------------------------------------------------------------------

def test_ndb_reads_none_for_a_missing_attribute_and_deleting_one_is_harmless(rt):
    obj = create_object()
    assert obj.ndb.mood is None
    del obj.ndb.mood
    obj.ndb.mood = "grumpy"
    assert obj.ndb.mood == "grumpy" and obj.ndb.all() == {"mood": "grumpy"}
    del obj.ndb.mood
    assert obj.ndb.mood is None and obj.ndb.all() == {}


def test_ndb_holds_anything_and_is_gone_after_a_reload(rt):
    obj = create_object()
    kettle = Kettle()
    obj.ndb.kettle = kettle
    assert obj.ndb.kettle is kettle
    rt.reload()
    assert get_object(obj.id).ndb.kettle is None


# -- db ----------------------------------------------------------------------------------------

def test_db_reads_none_for_a_missing_attribute(rt):
    obj = create_object()
    assert obj.db.hp is None
    assert obj.db.get("hp", 10) == 10
    del obj.db.hp  # harmless


def test_db_is_stored_across_a_reload_with_its_types(rt):
    hero = create_object(Hero, key="Hero")
    friend = create_object(key="Friend")
    hero.db.hp = 10
    hero.db.pos = (1, 2)
    hero.db.inventory = {1: "kettle", (2, 3): {"tea"}, "raw": b"\x00"}
    hero.db.friend = friend
    rt.reload()
    again = get_object(hero.id)
    assert again is not hero
    assert again.db.hp == 10
    assert type(again.db.pos) is tuple and again.db.pos == (1, 2)
    assert again.db.inventory == {1: "kettle", (2, 3): {"tea"}, "raw": b"\x00"}
    assert again.db.friend is get_object(friend.id)
    assert again.db.all() == {"creations": 1, "hp": 10, "pos": (1, 2),
                              "inventory": again.db.inventory, "friend": again.db.friend}


def test_db_lives_in_the_same_sqlite_file(rt):
    obj = create_object()
    obj.db.colour = "blue"
    other = sqlite3.connect(rt.store.path)
    try:
        rows = other.execute("SELECT name FROM attributes WHERE obj_id=?", (obj.id,)).fetchall()
    finally:
        other.close()
    assert rows == [("colour",)]


def test_deleting_a_db_attribute_is_stored(rt):
    obj = create_object()
    obj.db.colour = "blue"
    del obj.db.colour
    assert obj.db.colour is None
    rt.reload()
    assert get_object(obj.id).db.colour is None


def test_a_value_db_cannot_store_is_refused_naming_the_attribute(rt):
    obj = create_object()
    with pytest.raises(NotPersistableError, match="attribute 'pot'"):
        obj.db.pot = Kettle()
    assert obj.db.pot is None


# -- typeclasses after a reload ----------------------------------------------------------------

def test_an_object_comes_back_as_its_class_after_a_reload(rt):
    hero = create_object(Hero, key="Hero")
    plain = create_object(key="Plain")
    rt.reload()
    again = get_object(hero.id)
    assert type(again) is Hero and again.key == "Hero"
    assert again.shout("hi") == "HI"
    assert type(get_object(plain.id)) is DefaultCharacter


def test_an_object_whose_typeclass_is_gone_comes_back_as_a_default_object(rt, logged, monkeypatch):
    hero = create_object(Hero, key="Hero")
    monkeypatch.delattr(_support, "Hero")
    rt.reload()
    again = get_object(hero.id)
    assert type(again) is DefaultObject and again.key == "Hero"
    assert any("Hero" in text for text in logged.texts(LogLevel.warn))


# -- delete ------------------------------------------------------------------------------------

def test_delete_removes_the_object_and_its_attributes(rt):
    obj = create_object(key="Doomed")
    obj.db.colour = "blue"
    obj_id = obj.id
    assert obj.delete() is True
    assert obj.deleted and obj.delete() is False
    with pytest.raises(LookupError):
        get_object(obj_id)
    assert search_object("Doomed") == []
    with pytest.raises(ObjectDeletedError):
        obj.db.colour = "red"
    with pytest.raises(ObjectDeletedError):
        obj.key = "Revived"
    rt.reload()
    with pytest.raises(LookupError):
        get_object(obj_id)
    assert list(rt.store.conn.execute("SELECT * FROM attributes WHERE obj_id=?", (obj_id,))) == []


def test_a_deleted_objects_id_is_not_reused(rt):
    first = create_object()
    first.delete()
    second = create_object()
    assert second.id > first.id


def test_reading_db_of_a_deleted_object_is_an_error_not_a_stale_value(rt):
    from evasync import ObjectDeletedError, create_object

    ghost = create_object(key="Ghost")
    ghost.db.hp = 3
    ghost.delete()
    with pytest.raises(ObjectDeletedError):
        ghost.db.hp


def test_deleting_through_an_instance_from_before_a_reload_deletes_the_live_one_too(rt):
    from evasync import create_object, get_object

    hero = create_object(key="Hero")
    rt.reload()
    live = get_object(hero.id)
    closed = []

    def waiting():
        try:
            yield "Ready?"
        finally:
            closed.append(True)

    rt.driver.run(waiting(), live)
    assert hero.delete()
    assert live.deleted and closed == [True]
    with pytest.raises(LookupError):
        get_object(hero.id)
