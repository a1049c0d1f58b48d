"""build_method: the one factory from a recipe's model section; model.args are checked against the method's
signature, and keys that belong elsewhere say where. (What every method must do is tests/methods/test_method_contract.py.)"""
import pytest

from fgvc.methods import build_method
from fgvc.registry import RegistryError

BACKBONE = "test_resnet.r160_in1k"


def test_typos_and_unknown_methods_name_the_closest():
    with pytest.raises(RegistryError, match="did you mean 'pooling'"):
        build_method({"name": "bcnn", "backbone": BACKBONE, "args": {"poolng": "compact"}}, 3)
    with pytest.raises(RegistryError, match="unknown method 'wsdna' \\(did you mean 'wsdan'"):
        build_method({"name": "wsdna", "backbone": BACKBONE}, 3)
    with pytest.raises(RegistryError, match="model.name is missing"):
        build_method({"backbone": BACKBONE}, 3)


@pytest.mark.parametrize("key,where", [
    ("num_classes", "classes in the data: 3 here"), ("criterion", "loss section"), ("backbone", "set model.backbone"),
    ("backbone_args", "set model.backbone_args"), ("aux_losses", "set in loss.aux"),
])
def test_misplaced_model_args_say_where_they_belong(key, where):
    with pytest.raises(RegistryError, match=f"model.args.{key} is not a method argument: .*{where}"):
        build_method({"name": "baseline", "backbone": BACKBONE, "args": {key: 1}}, 3)
