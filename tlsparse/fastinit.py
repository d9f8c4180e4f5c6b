"""A faster `__init__` for the parser's frozen, slotted, keyword-only dataclasses (events, messages, extensions).

Why: a connection's parse builds some forty of these objects, and the `__init__` that `dataclasses` writes for a
frozen class calls `object.__setattr__` through an attribute lookup for every field, which made building them a
large part of the parser's time. This one stores each field through its slot's member descriptor (what
`object.__setattr__` ends up doing, without the lookups): the same keyword-only signature, the same defaults, the
same resulting object; everything else `dataclasses` made (frozen `__setattr__`, `__eq__`, `__repr__`, `fields`,
`replace`, pickling) is untouched.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T")


def fast_frozen_init(cls: type[T]) -> type[T]:
    """Class decorator, applied over `@dataclass(frozen=True, slots=True, kw_only=True)`. Classes it cannot serve
    exactly (a default_factory, an init=False field, a __post_init__) keep the dataclass `__init__`."""
    fields = dataclasses.fields(cls)  # type: ignore[arg-type]
    if hasattr(cls, "__post_init__") or any(
            not f.init or f.default_factory is not dataclasses.MISSING or not f.kw_only for f in fields):
        return cls
    setters: dict[str, object] = {}
    defaults: dict[str, object] = {}
    params: list[str] = []
    lines: list[str] = []
    for i, f in enumerate(fields):
        owner = next(k for k in cls.__mro__ if f.name in getattr(k, "__slots__", ()))
        setters[f"_set{i}"] = owner.__dict__[f.name].__set__  # the slot's member descriptor
        if f.default is dataclasses.MISSING:
            params.append(f.name)
        else:
            defaults[f"_default{i}"] = f.default
            params.append(f"{f.name}=_default{i}")
        lines.append(f"        _set{i}(self, {f.name})")
    names = ", ".join([*setters, *defaults])
    signature = f"self, *, {', '.join(params)}" if params else "self"
    source = (f"def make({names}):\n"
              f"    def __init__({signature}):\n"
              + ("\n".join(lines) or "        pass") + "\n"
              "    return __init__\n")
    namespace: dict[str, object] = {}
    exec(source, namespace)  # noqa: S102 - source built above from the class's own field names only
    init = namespace["make"](*setters.values(), *defaults.values())  # type: ignore[operator]
    init.__qualname__ = f"{cls.__qualname__}.__init__"
    init.__module__ = cls.__module__
    init.__doc__ = cls.__init__.__doc__
    init.__annotations__ = dict(getattr(cls.__init__, "__annotations__", {}))
    cls.__init__ = init  # type: ignore[misc]
    return cls


def positional_factory(cls: type[T]) -> Callable[..., T]:
    """A function building `cls` from all its fields, positionally, in declaration order (inherited fields
    first): `positional_factory(RecordSeen)(sender, frame, ts, offset, content_type, version, length,
    encrypted)`. Why: calling a class with keywords makes CPython pack the arguments into a tuple and a dict
    for `__init__`; the parser's record loop builds an event per record and uses these instead. The object is
    the one the class call would give (tests/tlsparse/test_fastinit.py).

    How: an instance of a plain twin class (the same base, the same slots, no frozen `__setattr__`) is filled
    with ordinary attribute stores, then given `cls` as its class (CPython allows `__class__` assignment between
    classes of the same layout): a genuine, frozen `cls` instance at about half the cost of writing each slot
    through its descriptor (a method call per field). A class for which that does not give the same object
    (checked here, once) gets the descriptor writes instead."""
    fields = dataclasses.fields(cls)  # type: ignore[arg-type]
    names = [f.name for f in fields]
    twin = _slots_twin(cls)
    if twin is not None:
        source = (f"def make(_twin, _cls):\n"
                  f"    def new_{cls.__name__}({', '.join(names)}):\n"
                  "        self = _twin()\n"
                  + "".join(f"        self.{name} = {name}\n" for name in names)
                  + "        self.__class__ = _cls\n"
                  "        return self\n"
                  f"    return new_{cls.__name__}\n")
        namespace: dict[str, Any] = {}
        exec(source, namespace)  # noqa: S102 - source built above from the class's own field names only
        factory: Callable[..., T] = namespace["make"](twin, cls)
        factory.__module__ = cls.__module__
        if _builds_the_same(factory, cls, names):
            return factory
    return _descriptor_factory(cls, fields)


def _slots_twin(cls: type) -> type | None:
    """A class laid out as `cls` (same base, same own slots) whose instances take plain attribute stores."""
    own = cls.__dict__.get("__slots__")
    if not isinstance(own, tuple) or "__dict__" in own or "__weakref__" in own:
        return None
    try:
        return type(f"_{cls.__name__}Slots", (cls.__base__,), {
            "__slots__": own, "__init__": object.__init__, "__setattr__": object.__setattr__,
            "__delattr__": object.__delattr__, "__module__": cls.__module__})
    except TypeError:
        return None


def _builds_the_same(factory: Callable[..., Any], cls: type, names: list[str]) -> bool:
    """The factory gives an instance of `cls` holding exactly the given values, still frozen."""
    values = [object() for _ in names]
    try:
        obj = factory(*values)
        if type(obj) is not cls or any(getattr(obj, n) is not v for n, v in zip(names, values, strict=True)):
            return False
        if names:
            try:
                setattr(obj, names[0], None)
            except dataclasses.FrozenInstanceError:
                return True
            return False
        return True
    except (TypeError, AttributeError):  # e.g. __class__ assignment refused: layouts differ
        return False


def _descriptor_factory(cls: type[T], fields: tuple[dataclasses.Field[Any], ...]) -> Callable[..., T]:
    """`positional_factory` for any slotted class: each slot written through its member descriptor."""
    setters = {}
    lines = []
    for i, f in enumerate(fields):
        owner = next(k for k in cls.__mro__ if f.name in getattr(k, "__slots__", ()))
        setters[f"_set{i}"] = owner.__dict__[f.name].__set__
        lines.append(f"        _set{i}(self, {f.name})")
    source = (f"def make(_new, _cls, {', '.join(setters)}):\n"
              f"    def new_{cls.__name__}({', '.join(f.name for f in fields)}):\n"
              "        self = _new(_cls)\n"
              + "\n".join(lines) + "\n"
              "        return self\n"
              f"    return new_{cls.__name__}\n")
    namespace: dict[str, Any] = {}
    exec(source, namespace)  # noqa: S102 - source built above from the class's own field names only
    factory: Callable[..., T] = namespace["make"](object.__new__, cls, *setters.values())
    factory.__module__ = cls.__module__
    return factory
