from __future__ import annotations

import pytest

from segbench.methods import METHODS, build_method, split_spec
from segbench.registry import Registry, UnknownNameError


def test_unknown_name_lists_known():
    reg: Registry[type] = Registry("widget")

    @reg.register("a")
    class A:
        pass

    assert reg.get("a") is A and A.name == "a" and "a" in reg
    with pytest.raises(UnknownNameError, match="unknown widget 'b'; known widgets: a"):
        reg.get("b")
    with pytest.raises(ValueError, match="registered twice"):
        reg.register("a")(type("B", (), {}))
    with pytest.raises(ValueError, match=r"may not contain '\+'"):
        reg.register("x+y")


def test_method_specs():
    assert split_spec("otsu") == ("otsu", [])
    with pytest.raises(UnknownNameError, match="known methods: .*otsu"):
        build_method("no-such-method", 2)
    with pytest.raises(UnknownNameError, match="unknown stage 'bogus'"):
        split_spec("otsu+bogus")
    with pytest.raises(ValueError, match="malformed"):
        split_spec("otsu++")
    with pytest.raises(ValueError, match="is a method, not a stage"):
        split_spec(f"otsu+{METHODS.names()[0]}")


def test_temporarily_restores_the_registry_however_the_block_ends():
    reg: Registry[type] = Registry("widget")
    reg.register("kept")(type("Kept", (), {}))
    widget = type("W", (), {})
    with reg.temporarily("w", widget) as registered:
        assert registered is widget and reg.get("w") is widget and widget.name == "w"
        assert reg.names() == ["kept", "w"]
    assert reg.names() == ["kept"]
    with pytest.raises(RuntimeError, match="inside"), reg.temporarily("w", widget):
        raise RuntimeError("inside the block")
    assert reg.names() == ["kept"]
    with pytest.raises(ValueError, match="registered twice"), reg.temporarily("kept", widget):
        pass  # pragma: no cover
    assert reg.get("kept").__name__ == "Kept"  # a refused name leaves the registered one in place
