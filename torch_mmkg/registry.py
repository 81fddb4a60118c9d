r"""One registry class for every kind of named component (models, fusions, interactions,
losses, training regimes, ...), with case-insensitive names and aliases.

This module imports only the standard library, so that every layer of :mod:`torch_mmkg` can
use it without import cycles.

.. code-block:: python

    from torch_mmkg.registry import Registry

    MODELS = Registry('model')

    @MODELS.register('rotate', aliases=('rot',))
    class RotatE:
        ...

    MODELS['RotatE'] is MODELS['rot'] is RotatE   # names are case-insensitive
    MODELS.build('Rotate', hidden_channels=8)      # looks the name up and calls it
    MODELS['rotat']   # UnknownComponentError: unknown model 'rotat'; choose from
                      # ['rotate']; did you mean 'rotate'?
"""
import difflib
from collections.abc import Mapping
from typing import (Any, Callable, Dict, Iterable, Iterator, List, Optional, Sequence, Tuple,
                    TypeVar)

__all__ = ['Registry', 'UnknownComponentError', 'normalize_name']

T = TypeVar('T')

_IGNORED = str.maketrans('', '', '-_ ')


def normalize_name(name: str) -> str:
    r"""The key a registry stores :obj:`name` under: case-folded, with :obj:`'-'`,
    :obj:`'_'` and spaces removed, so that :obj:`'Negative_Sampling'`,
    :obj:`'negative-sampling'` and :obj:`'negativesampling'` are one name.

    Args:
        name (str): A component name or alias.

    Returns:
        str: The normalised key.

    Raises:
        TypeError: If :obj:`name` is not a string.
    """
    if not isinstance(name, str):
        raise TypeError(f"a component name must be a string, got {type(name).__name__} "
                        f"{name!r}")
    return name.casefold().translate(_IGNORED)


class UnknownComponentError(KeyError, ValueError):
    r"""A name that no component of a :class:`Registry` has.

    It is a :class:`KeyError`, so that a registry behaves like a mapping
    (:obj:`registry[name]`), and a :class:`ValueError`, since the name is usually a bad value
    of an option (the command line reports value errors as one line and exits with status 2).
    Unlike a plain :class:`KeyError`, :obj:`str(error)` is the message itself, not its repr.

    Args:
        kind (str): The kind of component, e.g. :obj:`"model"`.
        name (Any): The name that was looked up.
        choices (Sequence[str]): The canonical names of the registry.
        suggestions (Sequence[str], optional): Close canonical names, best first.
            (default: :obj:`()`)

    Attributes:
        kind (str): The kind of component.
        name (Any): The name that was looked up.
        choices (List[str]): The canonical names, sorted.
        suggestions (List[str]): Close canonical names, best first.
    """

    def __init__(self, kind: str, name: Any, choices: Sequence[str],
                 suggestions: Sequence[str] = ()):
        self.kind = kind
        self.name = name
        self.choices = sorted(choices)
        self.suggestions = list(suggestions)
        super().__init__(self.message)

    @property
    def message(self) -> str:
        r"""The message: the kind, the name, the sorted choices and a suggestion."""
        msg = f"unknown {self.kind} {self.name!r}; choose from {self.choices}"
        if self.suggestions:
            msg += f"; did you mean {self.suggestions[0]!r}?"
        return msg

    def __str__(self) -> str:
        return self.message

    def __reduce__(self):
        return (type(self), (self.kind, self.name, self.choices, self.suggestions))


class Registry(Mapping):
    r"""Components of one kind by name: a read-only mapping from canonical names to objects
    whose lookups are case-insensitive, ignore :obj:`'-'`, :obj:`'_'` and spaces (see
    :func:`normalize_name`), and accept aliases.

    Iterating, :meth:`keys`, :meth:`items`, :meth:`values` and :obj:`len` see the canonical
    names (as first registered, in registration order), so that code written for a plain
    :obj:`dict` of components (:obj:`dict(registry)`, :obj:`sorted(registry)`,
    :obj:`registry[name]`) keeps working. Lookups (:obj:`registry[name]`, :meth:`get`,
    :obj:`in`, :meth:`canonical`, :meth:`build`) accept any spelling of a name or an alias;
    an unknown name raises :class:`UnknownComponentError` with the choices and a suggestion.

    Args:
        kind (str): The kind of component, e.g. :obj:`"model"`, :obj:`"fusion"`,
            :obj:`"loss"` or :obj:`"regime"`, used in error messages.
    """

    def __init__(self, kind: str):
        if not isinstance(kind, str) or not kind:
            raise TypeError(f"Registry(kind) needs a non-empty string, got {kind!r}")
        self.kind = kind
        self._objects: Dict[str, Any] = {}  # canonical name -> object, registration order
        self._keys: Dict[str, str] = {}  # normalised name or alias -> canonical name
        self._aliases: Dict[str, List[str]] = {}  # canonical name -> aliases

    # Registration ###########################################################################

    def register(self, name: str, obj: Any = None, *,
                 aliases: Iterable[str] = ()) -> Any:
        r"""Registers :obj:`obj` under :obj:`name` and :obj:`aliases`; without :obj:`obj`,
        returns a decorator that does so.

        .. code-block:: python

            @MODELS.register('rotate')
            class RotatE: ...

            MODELS.register('transe', TransE, aliases=('trans-e-l1',))

        Registering an object again under its own name (any spelling) is a no-op, but for
        aliases it did not have yet, which are added.

        Args:
            name (str): The canonical name, kept as given for :meth:`names` and error
                messages.
            obj (Any, optional): The component; :obj:`None` returns a decorator.
            aliases (Iterable[str], optional): Other names of the component.
                (default: :obj:`()`)

        Returns:
            The object (or a decorator returning the object it is given).

        Raises:
            TypeError: If a name or alias is not a string.
            ValueError: If a name or alias is empty once normalised, or already names a
                different object; nothing is registered then.
        """
        aliases = (aliases,) if isinstance(aliases, str) else tuple(aliases)
        if obj is None:
            normalize_name(name)  # fail at the decorator's line, not at the class
            for alias in aliases:
                normalize_name(alias)

            def decorator(obj: T) -> T:
                self.register(name, obj, aliases=aliases)
                return obj

            return decorator

        names = (name, *aliases)
        keys = [normalize_name(n) for n in names]
        for n, key in zip(names, keys):
            if not key:
                raise ValueError(f"{self.kind} name {n!r} is empty once case, '-', '_' and "
                                 f"spaces are ignored")
        canonical = self._keys.get(keys[0], name)
        new_aliases: List[str] = []
        for i, (n, key) in enumerate(zip(names, keys)):
            owner = self._keys.get(key)
            if owner is not None and self._objects[owner] is not obj:
                raise ValueError(f"cannot register {_describe(obj)} as {self.kind} {n!r}: "
                                 f"{n!r} already names {self.kind} {owner!r} "
                                 f"({_describe(self._objects[owner])})")
            if i > 0 and owner is None and key != keys[0] and key not in keys[1:i]:
                new_aliases.append(n)
        if canonical not in self._objects:
            self._objects[canonical] = obj
            self._aliases[canonical] = []
            self._keys[keys[0]] = canonical
        for alias in new_aliases:
            self._aliases[canonical].append(alias)
            self._keys[normalize_name(alias)] = canonical
        return obj

    def unregister(self, name: str) -> Any:
        r"""Removes the component :obj:`name` (a name or alias) with all its aliases.

        Args:
            name (str): A name or alias of the component.

        Returns:
            The object that was registered.

        Raises:
            UnknownComponentError: If no component has this name.
        """
        canonical = self.canonical(name)
        for alias in self._aliases.pop(canonical):
            del self._keys[normalize_name(alias)]
        del self._keys[normalize_name(canonical)]
        return self._objects.pop(canonical)

    def __setitem__(self, name: str, obj: Any):
        r"""Registers :obj:`obj` under :obj:`name`, or replaces the object of the component
        :obj:`name` names (keeping its canonical name, aliases and position): unlike
        :meth:`register`, this overrides. It lets tests patch a registry
        (:obj:`monkeypatch.setitem(MODELS, 'fake', Fake)`)."""
        key = normalize_name(name)
        if key in self._keys:
            self._objects[self._keys[key]] = obj
        else:
            self.register(name, obj)

    def __delitem__(self, name: str):
        r"""Same as :meth:`unregister`."""
        self.unregister(name)

    # Lookup #################################################################################

    def _canonical_or_none(self, name: Any) -> Optional[str]:
        if not isinstance(name, str):
            return None
        return self._keys.get(normalize_name(name))

    def _unknown(self, name: Any) -> UnknownComponentError:
        suggestions: List[str] = []
        if isinstance(name, str) and self._keys:
            for key in difflib.get_close_matches(normalize_name(name), list(self._keys), n=3):
                if self._keys[key] not in suggestions:
                    suggestions.append(self._keys[key])
        return UnknownComponentError(self.kind, name, list(self._objects), suggestions)

    def canonical(self, name: str) -> str:
        r"""The canonical name of a name or alias, in any spelling.

        Args:
            name (str): A name or alias.

        Returns:
            str: The name the component was registered under.

        Raises:
            UnknownComponentError: If no component has this name.
        """
        canonical = self._canonical_or_none(name)
        if canonical is None:
            raise self._unknown(name)
        return canonical

    def __getitem__(self, name: str) -> Any:
        r"""The component of a name or alias, in any spelling.

        Raises:
            UnknownComponentError: If no component has this name.
        """
        return self._objects[self.canonical(name)]

    def get(self, name: str, default: Any = None) -> Any:
        r"""The component of a name or alias, or :obj:`default` if there is none."""
        canonical = self._canonical_or_none(name)
        return default if canonical is None else self._objects[canonical]

    def __contains__(self, name: object) -> bool:
        r"""Whether a name or alias (in any spelling) names a component; :obj:`False` for
        anything but a string."""
        return self._canonical_or_none(name) is not None

    def aliases(self, name: str) -> Tuple[str, ...]:
        r"""The aliases of the component a name or alias names, in registration order.

        Raises:
            UnknownComponentError: If no component has this name.
        """
        return tuple(self._aliases[self.canonical(name)])

    def lookup(self, obj: Any) -> Optional[str]:
        r"""The canonical name a component (the object itself, compared by identity) was
        registered under first, or :obj:`None` if it is not registered."""
        for name, registered in self._objects.items():
            if registered is obj:
                return name
        return None

    def names(self) -> List[str]:
        r"""The canonical names, in registration order."""
        return list(self._objects)

    def __iter__(self) -> Iterator[str]:
        return iter(list(self._objects))

    def __len__(self) -> int:
        return len(self._objects)

    # Construction ###########################################################################

    def build(self, spec: Any, **kwargs: Any) -> Any:
        r"""Makes a component from a specification.

        * a string: looks the name or alias up and calls the component with :obj:`kwargs`;
        * a class: calls it with :obj:`kwargs` (registered or not);
        * anything else (an instance, a function): returns it unchanged, and :obj:`kwargs`
          must then be empty.

        Args:
            spec (str or type or Any): A name, a class or a ready-made component.
            **kwargs: The constructor's keyword arguments.

        Raises:
            UnknownComponentError: If :obj:`spec` is a string no component has.
            TypeError: If :obj:`spec` is an instance and :obj:`kwargs` are given.
        """
        if isinstance(spec, str):
            factory: Callable[..., Any] = self[spec]
            return factory(**kwargs)
        if isinstance(spec, type):
            return spec(**kwargs)
        if kwargs:
            raise TypeError(f"{self.kind} {_describe(spec)} is already built; it takes no "
                            f"arguments, got {sorted(kwargs)}")
        return spec

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.kind!r}, {self.names()})"


def _describe(obj: Any) -> str:
    if isinstance(obj, type) or (callable(obj) and hasattr(obj, '__qualname__')):
        return f"{getattr(obj, '__module__', '?')}.{obj.__qualname__}"
    return repr(obj)
