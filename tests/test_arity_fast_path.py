"""Each core's ``describe_callback`` fast path agrees with the slow path.

``_core_c.describe_callback`` and ``_core_py.describe_callback`` read plain
functions and their bound methods from ``__code__`` (see the comment above
``lke_describe_fast`` in _core_c.pyx) and hand everything else to
``_common.describe_callback`` (inspect.signature and the async checks).  Here
both are run over a large corpus of callables, hypothesis-generated
signatures included, and must give exactly what the slow path gives: the same
``(accepted, required)``, or the same exception type and message.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import keyword
import sys
import types
from typing import Any, Callable, List, Optional, Tuple

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from livekit_events._common import describe_callback as slow_describe

Outcome = Tuple[str, Any]


def _outcome(describe: Callable[[Any], Tuple[int, int]], callback: Any) -> Outcome:
    try:
        return ("ok", describe(callback))
    except Exception as exc:  # noqa: BLE001 - the exception is the outcome
        return ("raises", (type(exc), str(exc)))


def _assert_agrees(impl: Any, callback: Any) -> Outcome:
    expected = _outcome(slow_describe, callback)
    assert _outcome(impl.core.describe_callback, callback) == expected, callback
    # And through the public API: registered or rejected alike.
    emitter = impl.EventEmitter()
    registered = _outcome(lambda c: emitter.on("e", c), callback)
    assert registered[0] == expected[0], callback
    if expected[0] == "raises":
        assert registered[1] == expected[1]
        assert emitter.listeners("e") == []
    return expected


# -- generated signatures ---------------------------------------------------------

_NAMES = st.sampled_from(["a", "b", "c", "self", "x_1", "payload", "match", "_", "ç", "λ"])


@st.composite
def signatures(draw: Any) -> str:
    """The parameter list of a def: positional-only, regular, *args, keyword-only,
    **kwargs, with and without defaults, distinct names."""
    names = draw(st.lists(_NAMES, unique=True, max_size=9))

    def take(count: int) -> List[str]:
        taken = names[:count]
        del names[:count]
        return taken

    posonly = take(draw(st.integers(0, 2)))
    regular = take(draw(st.integers(0, 3)))
    positional = posonly + regular
    ndefaults = draw(st.integers(0, len(positional)))
    varargs = (take(1) or [None])[0] if draw(st.booleans()) else None
    kwonly = take(draw(st.integers(0, 2)))
    kwonly_defaults = [draw(st.booleans()) for _ in kwonly]
    varkw = (take(1) or [None])[0] if draw(st.booleans()) else None

    parts: List[str] = []
    for i, name in enumerate(positional):
        default = i >= len(positional) - ndefaults
        parts.append(f"{name}={i}" if default else name)
        if posonly and i == len(posonly) - 1:
            parts.append("/")
    if varargs:
        parts.append(f"*{varargs}")
    elif kwonly:
        parts.append("*")
    for name, has_default in zip(kwonly, kwonly_defaults):
        parts.append(f"{name}=None" if has_default else name)
    if varkw:
        parts.append(f"**{varkw}")
    return ", ".join(parts)


def _make(params: str, prefix: str = "", body: str = "pass") -> Callable[..., Any]:
    namespace: dict = {}
    exec(f"{prefix}def f({params}):\n    {body}\n", namespace)  # noqa: S102 - generated test input
    return namespace["f"]


def _variants(params: str) -> List[Any]:
    """Callables built on one parameter list, in every form the cores meet."""
    plain = _make(params)
    out: List[Any] = [
        plain,
        _make(params, body="yield"),  # generator function: sync
        _make(params, prefix="async "),
        _make(params, prefix="async ", body="yield"),  # async generator
        types.MethodType(plain, object()),
        types.MethodType(_make(params, prefix="async "), object()),
        types.MethodType(plain, type),  # as a classmethod is bound
        functools.partial(plain),
    ]

    @functools.wraps(plain)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        return plain(*args, **kwargs)

    out += [wrapper, types.MethodType(wrapper, object())]

    class Holder:
        method = _make(params)
        cm = classmethod(_make(params))
        sm = staticmethod(_make(params))

    holder = Holder()
    out += [holder.method, Holder.cm, holder.cm, Holder.sm, holder.sm, Holder.method]

    marked = _make(params)
    if hasattr(inspect, "markcoroutinefunction"):
        out.append(inspect.markcoroutinefunction(marked))
        out.append(types.MethodType(marked, object()))
    legacy = _make(params)
    legacy._is_coroutine = getattr(asyncio.coroutines, "_is_coroutine", object())  # type: ignore[attr-defined]
    out += [legacy, types.MethodType(legacy, object())]

    with_attribute = _make(params)
    with_attribute.tag = 1  # type: ignore[attr-defined]
    out.append(with_attribute)
    signed = _make(params)
    signed.__signature__ = inspect.Signature()  # type: ignore[attr-defined]
    out += [signed, types.MethodType(signed, object())]
    coroutine_flagged = _make(params, body="yield")
    out.append(types.coroutine(coroutine_flagged))
    return out


@pytest.mark.thread_unsafe(reason="hypothesis: run it once, not once per thread")
@settings(max_examples=300, deadline=None)
@given(params=signatures())
def test_generated_signatures_agree(impl: Any, params: str) -> None:
    for callback in _variants(params):
        _assert_agrees(impl, callback)


@pytest.mark.thread_unsafe(reason="hypothesis: run it once, not once per thread")
@settings(max_examples=150, deadline=None)
@given(
    params=signatures(),
    defaults=st.one_of(
        st.none(),
        st.lists(st.sampled_from([0, None, inspect.Parameter.empty]), max_size=6).map(tuple),
    ),
    kwdefaults=st.one_of(
        st.none(),
        st.dictionaries(_NAMES, st.sampled_from([0, inspect.Parameter.empty]), max_size=4),
    ),
)
def test_reassigned_defaults_agree(
    impl: Any, params: str, defaults: Optional[tuple], kwdefaults: Optional[dict]
) -> None:
    # __defaults__ / __kwdefaults__ set by hand: longer than the parameters,
    # holding Parameter.empty, missing keyword-only names.
    function = _make(params)
    function.__defaults__ = defaults
    function.__kwdefaults__ = kwdefaults
    _assert_agrees(impl, function)
    _assert_agrees(impl, types.MethodType(function, object()))


# -- hand-picked corner cases -------------------------------------------------------


def _code_with_names(function: Callable[..., Any], names: Tuple[str, ...]) -> Callable[..., Any]:
    code = function.__code__
    replaced = code.replace(co_varnames=names + code.co_varnames[len(names) :])
    return types.FunctionType(replaced, function.__globals__)


def _corner_cases() -> List[Any]:
    def two(a: int, b: int) -> None: ...

    def kwonly_required(a: int, *, k: int) -> None: ...

    def kwonly_optional(a: int, *, k: int = 0) -> None: ...

    def only_varargs(*args: Any) -> None: ...

    def no_params() -> None: ...

    def only_kwargs(**kwargs: Any) -> None: ...

    def with_posonly(a: int, b: int = 0, /, c: int = 1) -> None: ...

    class Callable_:
        def __call__(self, a: int) -> None: ...

    class AsyncCallable:
        async def __call__(self, a: int) -> None: ...

    kwdefaults_subclass = _make("a, *, k")

    class KwDict(dict):  # type: ignore[type-arg]
        def get(self, key: Any, default: Any = None) -> Any:
            return 0

    kwdefaults_subclass.__kwdefaults__ = KwDict()

    defaults_subclass = _make("a, b")

    class Defaults(tuple):  # type: ignore[type-arg]
        pass

    defaults_subclass.__defaults__ = Defaults((1,))

    cases: List[Any] = [
        two,
        kwonly_required,
        kwonly_optional,
        only_varargs,
        no_params,
        only_kwargs,
        with_posonly,
        types.MethodType(no_params, object()),  # no parameter for self
        types.MethodType(only_varargs, object()),
        types.MethodType(only_kwargs, object()),
        types.MethodType(kwonly_required, object()),
        types.MethodType(types.MethodType(two, 1), 2),  # method of a method
        types.MethodType(Callable_(), object()),
        Callable_(),
        AsyncCallable(),
        print,
        len,
        dict,
        functools.partial(two, 1),
        kwdefaults_subclass,
        defaults_subclass,
        [].append,
        "not callable",
        lambda: None,
        lambda *a, **k: None,
        # Hand-made code objects: names inspect rejects, renames or merges.
        _code_with_names(two, ("a", "a")),
        _code_with_names(two, ("if", "b")),
        _code_with_names(two, (".0", "b")),
        _code_with_names(with_posonly, ("if", "b", "c")),
        _code_with_names(with_posonly, (".0", "b", "c")),
        _code_with_names(two, ("a", "not an identifier")),
        types.MethodType(_code_with_names(two, ("a", "a")), object()),
        types.MethodType(_code_with_names(two, ("self", "if")), object()),
    ]
    for name in keyword.kwlist[:3]:
        cases.append(_code_with_names(two, ("a", name)))
    return cases


@pytest.mark.parametrize("index", range(len(_corner_cases())))
def test_corner_cases_agree(impl: Any, index: int) -> None:
    _assert_agrees(impl, _corner_cases()[index])


@pytest.mark.thread_unsafe(reason="replaces inspect.signature for the whole process")
def test_fast_path_answers_for_plain_functions_and_methods(impl: Any) -> None:
    # The agreement tests would pass with no fast path at all; this one checks
    # that the common callbacks take it: describing them must not call inspect.
    def handler(a: int, b: int = 0) -> None: ...

    class Subscriber:
        def on_event(self, a: int) -> None: ...

    calls: List[Any] = []
    original = inspect.signature

    def spy(*args: Any, **kwargs: Any) -> Any:
        calls.append(args)
        return original(*args, **kwargs)

    inspect.signature = spy  # type: ignore[assignment]
    try:
        assert impl.core.describe_callback(handler) == (2, 1)
        assert impl.core.describe_callback(Subscriber().on_event) == (1, 1)
        assert calls == []
        assert impl.core.describe_callback(functools.partial(handler)) == (2, 1)
        assert len(calls) == 1  # the slow path is the one that asks inspect
    finally:
        inspect.signature = original  # type: ignore[assignment]


@pytest.mark.skipif(sys.version_info < (3, 14), reason="lazy annotations are 3.14+")
def test_lazy_annotations_are_left_to_the_slow_path(impl: Any) -> None:
    # inspect.signature evaluates them on 3.14: an undefined name raises there.
    namespace: dict = {}
    exec("def f(a: Undefined) -> None: pass\n", namespace)  # noqa: S102
    _assert_agrees(impl, namespace["f"])
