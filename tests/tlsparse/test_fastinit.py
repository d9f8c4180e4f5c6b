"""`fast_frozen_init`: every event, message and extension class keeps the behaviour of the `__init__` that
`dataclasses` writes (keyword-only, same defaults, frozen afterwards, equal objects, replace and pickle work)."""
from __future__ import annotations

import copy
import dataclasses
import inspect
import pickle

import pytest

from tlsparse import events, messages
from tlsparse.fastinit import fast_frozen_init, positional_factory

CLASSES = [obj for module in (events, messages) for obj in vars(module).values()
           if inspect.isclass(obj) and dataclasses.is_dataclass(obj) and obj.__module__ == module.__name__]


def _value(field: dataclasses.Field, i: int) -> object:
    """A distinct value per field (the types do not matter to the constructor)."""
    return ("value", field.name, i)


@pytest.mark.parametrize("cls", CLASSES, ids=lambda c: c.__name__)
def test_constructor_matches_the_dataclass_one(cls) -> None:
    assert cls.__init__.__code__.co_filename == "<string>"
    assert "_set0" in cls.__init__.__code__.co_freevars or not dataclasses.fields(cls)
    fields = dataclasses.fields(cls)
    given = {f.name: _value(f, i) for i, f in enumerate(fields)}
    obj = cls(**given)
    assert {f.name: getattr(obj, f.name) for f in fields} == given
    # The reference: what the dataclass __init__ does, field by field through object.__setattr__.
    reference = object.__new__(cls)
    for name, value in given.items():
        object.__setattr__(reference, name, value)
    assert obj == reference and repr(obj) == repr(reference)
    required = [f.name for f in fields if f.default is dataclasses.MISSING]
    minimal = cls(**{name: given[name] for name in required})
    for f in fields:
        if f.default is not dataclasses.MISSING:
            assert getattr(minimal, f.name) == f.default
    for name in required:
        with pytest.raises(TypeError):
            cls(**{n: given[n] for n in required if n != name})
    with pytest.raises(TypeError):
        cls(**given, not_a_field=1)
    if fields:
        with pytest.raises(TypeError):
            cls(*given.values())
        with pytest.raises(dataclasses.FrozenInstanceError):
            setattr(obj, fields[0].name, None)
        assert dataclasses.replace(obj, **{fields[0].name: "other"}) == cls(**{**given, fields[0].name: "other"})
    assert pickle.loads(pickle.dumps(obj)) == obj


@pytest.mark.parametrize("cls", CLASSES, ids=lambda c: c.__name__)
def test_positional_factory_builds_what_the_class_builds(cls) -> None:
    fields = dataclasses.fields(cls)
    given = {f.name: _value(f, i) for i, f in enumerate(fields)}
    obj = positional_factory(cls)(*given.values())
    assert type(obj) is cls
    assert obj == cls(**given) and repr(obj) == repr(cls(**given))
    with pytest.raises(TypeError):
        positional_factory(cls)(*given.values(), "one too many")
    # The twin-class path (filled as a plain class, then given cls as its class) serves every parser class, and
    # what it gives behaves as a class-built object in every way: frozen, hashable, pickled, copied, replaced.
    assert "__class__" in positional_factory(cls).__code__.co_names
    assert hash(obj) == hash(cls(**given)) and not hasattr(obj, "__dict__")
    assert pickle.loads(pickle.dumps(obj)) == obj and copy.copy(obj) == obj
    if fields:
        with pytest.raises(dataclasses.FrozenInstanceError):
            setattr(obj, fields[-1].name, None)
        with pytest.raises(dataclasses.FrozenInstanceError):
            delattr(obj, fields[-1].name)
        assert dataclasses.replace(obj, **{fields[-1].name: "other"}) == cls(**{**given, fields[-1].name: "other"})


def test_positional_factory_falls_back_where_no_twin_fits() -> None:
    """A layout the twin cannot copy (a __weakref__ slot) gets the slot-by-slot factory: the same object."""
    @dataclasses.dataclass(frozen=True, slots=True, weakref_slot=True)
    class Weak:
        a: int
        b: str = "x"

    factory = positional_factory(Weak)
    assert "__class__" not in factory.__code__.co_names
    assert factory(1, "y") == Weak(1, "y") and type(factory(1, "y")) is Weak


def test_classes_it_cannot_serve_keep_their_init() -> None:
    @dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
    class WithFactory:
        items: list[int] = dataclasses.field(default_factory=list)

    original = WithFactory.__init__
    assert fast_frozen_init(WithFactory).__init__ is original
    assert WithFactory().items == []
