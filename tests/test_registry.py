import pytest

from fgvc.registry import Registry, RegistryError


def test_register_build_and_errors():
    reg = Registry("thing")

    @reg.register("alpha")
    def make(a: int, b: int = 2):
        return a + b

    assert reg.build("alpha", a=1) == 3 and "alpha" in reg and reg.names() == ["alpha"]
    with pytest.raises(RegistryError, match="did you mean 'alpha'"):
        reg.get("alpah")
    with pytest.raises(RegistryError, match="takes no argument 'c'.*it takes: a, b"):
        reg.build("alpha", a=1, c=3)
    with pytest.raises(RegistryError, match="registered twice"):
        reg.register("alpha")(lambda: 0)


def test_shipped_registries_have_components():
    import fgvc.losses  # noqa: F401
    import fgvc.methods  # noqa: F401
    from fgvc.registry import LOSSES, METHODS

    assert "baseline" in METHODS and "cross_entropy" in LOSSES
