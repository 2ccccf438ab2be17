"""The type stubs (runmetrics/__init__.pyi) describe the module as it is:
the same public names, and each function's and constructor's parameters
(names, kinds, defaults) as the runtime reports them. Docstrings are there
for editors, at runtime and in the stubs."""

import ast
import inspect
import pathlib

import runmetrics

STUB = pathlib.Path(runmetrics.__file__).with_name("__init__.pyi")


def stub_tree():
    return ast.parse(STUB.read_text())


def params(args: ast.arguments, drop_self=False):
    out = []
    pos = args.posonlyargs + args.args
    defaults = [None] * (len(pos) - len(args.defaults)) + args.defaults
    for i, (a, d) in enumerate(zip(pos, defaults)):
        kind = "POSITIONAL_ONLY" if i < len(args.posonlyargs) else "POSITIONAL_OR_KEYWORD"
        out.append((a.arg, kind, None if d is None else ast.literal_eval(d)))
    if args.vararg:
        out.append((args.vararg.arg, "VAR_POSITIONAL", None))
    for a, d in zip(args.kwonlyargs, args.kw_defaults):
        out.append((a.arg, "KEYWORD_ONLY", None if d is None else ast.literal_eval(d)))
    if args.kwarg:
        out.append((args.kwarg.arg, "VAR_KEYWORD", None))
    return out[1:] if drop_self else out


def runtime_params(obj):
    out = []
    for p in inspect.signature(obj).parameters.values():
        default = None if p.default is inspect.Parameter.empty else p.default
        out.append((p.name, p.kind.name, default))
    return out


def test_the_stub_names_what_the_module_exports():
    tree = stub_tree()
    names = {
        n.name
        for n in tree.body
        if isinstance(n, (ast.FunctionDef, ast.ClassDef)) and not n.name.startswith("_")
    }
    assert names == set(runmetrics.__all__)
    assert pathlib.Path(runmetrics.__file__).with_name("py.typed").exists()


def test_each_function_and_constructor_has_the_runtime_signature():
    checked = 0
    for node in stub_tree().body:
        if isinstance(node, ast.FunctionDef) and node.name in runmetrics.__all__:
            if any(isinstance(d, ast.Name) and d.id == "overload" for d in node.decorator_list):
                continue
            obj = getattr(runmetrics, node.name)
            want = params(node.args)
            assert runtime_params(obj) == want, node.name
            assert obj.__doc__, node.name
            checked += 1
        if isinstance(node, ast.ClassDef) and node.name.endswith("Timer"):
            init = next(n for n in node.body if isinstance(n, ast.FunctionDef) and n.name == "__init__")
            cls = getattr(runmetrics, node.name)
            assert runtime_params(cls) == params(init.args, drop_self=True), node.name
            assert cls.__doc__ and "with " in cls.__doc__
            checked += 1
    assert checked == 10  # 8 functions (measure included), 2 timers


def test_measure_keeps_the_wrapped_functions_signature_for_editors():
    @runmetrics.measure("f", module="m")
    def f(a: int, b: str = "x") -> str:
        return b * a

    assert inspect.signature(f) == inspect.signature(f.__wrapped__)
    assert f.__annotations__ == {"a": int, "b": str, "return": str}
