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
