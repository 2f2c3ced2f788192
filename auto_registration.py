"""Register kosenttype's classes with transformers' Auto factories as soon as transformers is imported, so that
installed users load saved folders without `trust_remote_code`, while `import kosenttype` alone (the onnxruntime
path) imports neither torch nor transformers.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import sys
from types import ModuleType

_MODEL_MODULES = (f"{__package__}.configuration_kosenttype", f"{__package__}.modeling_kosenttype")
_registered = False


def register_auto_classes() -> None:
    """AutoConfig / AutoModel / AutoModelForSequenceClassification learn the `kosenttype` model type."""
    global _registered
    if _registered:
        return
    from transformers import AutoConfig, AutoModel, AutoModelForSequenceClassification

    from .configuration_kosenttype import KoSentTypeConfig
    from .modeling_kosenttype import KoSentTypeForSequenceClassification, KoSentTypeModel

    AutoConfig.register(KoSentTypeConfig.model_type, KoSentTypeConfig, exist_ok=True)
    AutoModel.register(KoSentTypeConfig, KoSentTypeModel, exist_ok=True)
    AutoModelForSequenceClassification.register(KoSentTypeConfig, KoSentTypeForSequenceClassification, exist_ok=True)
    _registered = True


def _register_if_ready(just_loaded: str | None = None) -> None:
    """Register once transformers is loaded and none of our model files is still half-imported (a model file that
    imports transformers finishes after it: registering then would be circular). `just_loaded` has run its whole
    body, though the import system still marks it as initializing."""
    initializing = any(
        getattr(getattr(sys.modules.get(name), "__spec__", None), "_initializing", False)
        for name in _MODEL_MODULES
        if name != just_loaded
    )
    if "transformers" in sys.modules and not initializing:
        register_auto_classes()


class _RegisterAfterLoading(importlib.abc.Loader):
    """Runs a module's own loader, then tries to register."""

    def __init__(self, loader: importlib.abc.Loader) -> None:
        self.loader = loader

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType | None:
        return self.loader.create_module(spec)

    def exec_module(self, module: ModuleType) -> None:
        self.loader.exec_module(module)
        _register_if_ready(module.__name__)


class _RegistrationHook(importlib.abc.MetaPathFinder):
    """Finds transformers and our model files as usual, with loaders that register right after the last of them
    has loaded; removes itself once registration is done."""

    def find_spec(self, fullname: str, path: object, target: ModuleType | None = None):
        if _registered:
            if self in sys.meta_path:
                sys.meta_path.remove(self)
            return None
        if fullname != "transformers" and fullname not in _MODEL_MODULES:
            return None
        for finder in sys.meta_path:
            if finder is self or not hasattr(finder, "find_spec"):
                continue
            spec = finder.find_spec(fullname, path, target)
            if spec is not None:
                if spec.loader is not None:
                    spec.loader = _RegisterAfterLoading(spec.loader)
                return spec
        return None


def register_when_transformers_is_imported() -> None:
    """Register now if transformers is loaded already, else right after it is."""
    _register_if_ready()
    if not _registered and not any(isinstance(finder, _RegistrationHook) for finder in sys.meta_path):
        sys.meta_path.insert(0, _RegistrationHook())
