"""Build and load BiomedCLIP (open_clip ``CustomTextCLIP``: timm ViT-B/16 + BERT-base).

The architecture comes from configs kept in this repository (``engines/configs/*.json``), so
nothing is downloaded to build it. Weights are looked for, in order:

1. the ``model`` argument (``-m/--model`` on the CLI): a directory laid out like the Hugging Face
   snapshot of ``microsoft/BiomedCLIP-PubMedBERT_256-vit_base_patch16_224``
   (``open_clip_pytorch_model.bin`` or ``open_clip_model.safetensors`` plus the tokenizer files),
   or a weights file whose directory holds the tokenizer;
2. the ``HOLOSCAN_MODEL_PATH`` environment variable (same forms);
3. the Hugging Face cache (``$HF_HOME``/hub or ``~/.cache/huggingface/hub``).

When none is found, a seeded random-weight **demo model** is built with a WordPiece tokenizer
trained on the burn prompt texts. Every result made with it is flagged ``demo`` and carries
``DEMO MODEL (random weights) — not for clinical use``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from burnscope.common.messages import DEMO_BANNER, ModelInfo
from burnscope.common.vocabulary import default_prompts_path

log = logging.getLogger(__name__)

CONFIG_DIR = Path(__file__).with_name("configs")
WEIGHT_FILES = ("open_clip_model.safetensors", "open_clip_pytorch_model.bin")
HF_REPO_DIR = "models--microsoft--BiomedCLIP-PubMedBERT_256-vit_base_patch16_224"
DEMO_SEED = 0


def cache_root() -> Path:
    """Where burnscope keeps derived artefacts (ONNX exports, prompt embeddings, demo tokenizer)."""
    root = Path(os.environ.get("BURNSCOPE_CACHE", Path.home() / ".cache" / "burnscope"))
    root.mkdir(parents=True, exist_ok=True)
    return root


def load_model_config(config: str | os.PathLike = "biomedclip") -> dict[str, Any]:
    """A model config by name (``engines/configs/<name>.json``) or by path."""
    path = Path(config)
    if not path.suffix:
        path = CONFIG_DIR / f"{config}.json"
    if not path.is_file():
        known = sorted(p.stem for p in CONFIG_DIR.glob("*.json"))
        raise FileNotFoundError(f"unknown model config {str(config)!r}; known: {', '.join(known)}")
    return json.loads(path.read_text())


def _digest(data: Any) -> str:
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:16]


def _bert_config_dir(config: dict[str, Any]) -> Path:
    """A local directory holding the text tower's ``BertConfig`` (open_clip reads it by path)."""
    from transformers import BertConfig

    directory = cache_root() / "bert-configs" / _digest(config["bert_cfg"])
    if not (directory / "config.json").is_file():
        directory.mkdir(parents=True, exist_ok=True)
        BertConfig(**config["bert_cfg"]).save_pretrained(directory)
    return directory


def build_model(config: dict[str, Any], seed: int | None = DEMO_SEED):
    """The BiomedCLIP architecture with random weights (seeded for a reproducible demo model)."""
    import open_clip
    import torch

    model_cfg = json.loads(json.dumps(config["model_cfg"]))  # deep copy: we edit text_cfg
    text_cfg = model_cfg["text_cfg"]
    text_cfg["hf_model_name"] = str(_bert_config_dir(config))
    text_cfg["hf_tokenizer_name"] = text_cfg["hf_model_name"]
    text_cfg["hf_model_pretrained"] = False  # build from config, download nothing
    if seed is not None:
        torch.manual_seed(seed)
    model = open_clip.CustomTextCLIP(**model_cfg)
    return model.eval()


def _hf_cache_dirs() -> list[Path]:
    roots = []
    if os.environ.get("HF_HUB_CACHE"):
        roots.append(Path(os.environ["HF_HUB_CACHE"]))
    if os.environ.get("HF_HOME"):
        roots.append(Path(os.environ["HF_HOME"]) / "hub")
    roots.append(Path.home() / ".cache" / "huggingface" / "hub")
    return roots


def _weights_in(path: Path) -> Path | None:
    if path.is_file():
        return path
    for name in WEIGHT_FILES:
        if (path / name).is_file():
            return path / name
    return None


def find_weights(model: str | os.PathLike | None = None) -> Path | None:
    """The weights file to use, or None (→ demo model). An explicit path that holds no
    weights is an error, not a silent fallback."""
    for source, value in (("--model", model), ("HOLOSCAN_MODEL_PATH", os.environ.get("HOLOSCAN_MODEL_PATH"))):
        if value:
            from burnscope.engines.model_folder import model_dir_of

            found = _weights_in(model_dir_of(value))
            if found is None:
                raise FileNotFoundError(
                    f"{source}={value}: no BiomedCLIP weights there (expected a weights file or a folder "
                    f"with one of {', '.join(WEIGHT_FILES)})"
                )
            return found
    for root in _hf_cache_dirs():
        snapshots = root / HF_REPO_DIR / "snapshots"
        if snapshots.is_dir():
            for snapshot in sorted(snapshots.iterdir(), key=lambda p: p.stat().st_mtime, reverse=True):
                found = _weights_in(snapshot)
                if found is not None:
                    return found
    return None


def _load_state_dict(path: Path) -> dict[str, Any]:
    import torch

    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            return load_file(str(path))
        with warnings.catch_warnings():  # torch warns about odd pickle protocols before refusing them
            warnings.simplefilter("ignore")
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - a damaged or hostile file: say so, never unpickle more
        raise ValueError(
            f"{path}: not a readable PyTorch weights file ({type(exc).__name__}); burnscope loads tensors only "
            "and never unpickles other objects"
        ) from None
    return state.get("state_dict", state) if isinstance(state, dict) else state


def demo_tokenizer_dir(texts: list[str] | None = None) -> Path:
    """A WordPiece tokenizer (BERT layout) whose vocabulary is built from the burn prompt texts.

    Real weights bring their own tokenizer; the demo model has none, and no vocabulary can be
    downloaded. The vocabulary is deterministic: the same prompts give the same token ids.
    """
    import string

    from tokenizers import BertWordPieceTokenizer
    from tokenizers.pre_tokenizers import BertPreTokenizer
    from transformers import PreTrainedTokenizerFast

    corpus = list(texts or []) + _default_corpus()
    directory = cache_root() / "demo-tokenizer" / _digest(corpus)
    if (directory / "vocab.txt").is_file():
        return directory
    # Every whole word of the corpus, plus single characters (and their ## continuations) so
    # that any other text still tokenizes without [UNK] floods.
    splitter = BertPreTokenizer()
    words = sorted({w for text in corpus for w, _ in splitter.pre_tokenize_str(text.lower())})
    chars = sorted(set(string.ascii_lowercase + string.digits + string.punctuation))
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + chars + [f"##{c}" for c in chars]
    vocab += [w for w in words if w not in set(vocab)]
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "vocab.txt").write_text("\n".join(vocab) + "\n")
    wordpiece = BertWordPieceTokenizer(str(directory / "vocab.txt"), lowercase=True)
    special = {k: f"[{k.split('_')[0].upper()}]" for k in ("unk_token", "pad_token", "cls_token", "sep_token", "mask_token")}
    PreTrainedTokenizerFast(tokenizer_object=wordpiece._tokenizer, **special).save_pretrained(directory)
    return directory


def _default_corpus() -> list[str]:
    """Prompt texts of the burn head (shipped with burnscope.common) plus a few generic phrases."""
    texts = [
        "a clinical photograph of skin",
        "a photo of a burn wound",
        "an image that is not a burn",
        "a medical image of the hand, arm, leg, face, chest, back or foot",
    ]
    prompts = default_prompts_path()
    if prompts.is_file():
        import yaml

        data = yaml.safe_load(prompts.read_text()) or {}
        for value in data.values() if isinstance(data, dict) else []:
            items = value.get("prompts", []) if isinstance(value, dict) else value
            texts.extend(str(t) for t in (items or []) if isinstance(t, str))
    return texts


@dataclass
class ModelBundle:
    """A BiomedCLIP: its provenance and configuration, and the torch model and tokenizer.

    The torch model is built on first use (``model``, ``tokenizer``): a run whose ONNX Runtime
    engine and prompt embeddings are already cached for this ``fingerprint`` never builds it, which
    saves most of the start-up time. ``logit_scale`` is kept in the cache beside them for the same
    reason. ``loader`` returns ``(torch model, tokenizer)``.
    """

    loader: Callable[[], tuple[Any, Any]] = field(repr=False)
    info: ModelInfo
    config: dict[str, Any]
    fingerprint: str
    cache_dir: Path
    preprocess_cfg: dict[str, Any] = field(default_factory=dict)
    #: The burn head that comes with a model folder (``engines/model_folder.py``), else None.
    head_path: Path | None = None
    tokenizer_dir: Path | None = None
    _built: tuple[Any, Any] | None = field(default=None, repr=False, compare=False)

    @classmethod
    def of(cls, model: Any, tokenizer: Any, **fields: Any) -> "ModelBundle":
        """A bundle around a model that is already built."""
        return cls(loader=lambda: (model, tokenizer), _built=(model, tokenizer), **fields)

    @property
    def built(self) -> bool:
        return self._built is not None

    def _build(self) -> tuple[Any, Any]:
        if self._built is None:
            started = time.perf_counter()
            self._built = self.loader()
            log.info("built the torch model (%.1f s)", time.perf_counter() - started)
        return self._built

    @property
    def model(self) -> Any:
        return self._build()[0]

    @property
    def tokenizer(self) -> Callable[[list[str]], Any]:
        return self._build()[1]

    @property
    def demo(self) -> bool:
        return self.info.demo

    @property
    def logit_scale(self) -> float:
        """exp of the model's learned logit scale; read from the cache when the model is not built."""
        meta = Path(self.cache_dir) / "model-meta.json"
        if not self.built and meta.is_file():
            try:
                return float(json.loads(meta.read_text())["logit_scale"])
            except (ValueError, KeyError, OSError):
                pass
        value = float(self.model.logit_scale.detach().exp().item())
        try:
            tmp = meta.with_name(f"{meta.name}.{os.getpid()}.tmp")
            tmp.write_text(json.dumps({"logit_scale": value}))
            tmp.replace(meta)
        except OSError:
            pass
        return value

    @property
    def embed_dim(self) -> int:
        return int(self.config["model_cfg"]["embed_dim"])

    def encode_text(self, texts: list[str], batch_size: int = 32) -> np.ndarray:
        """L2-normalised text embeddings (N×D float32). The text tower is costly: cache results."""
        import torch

        chunks = []
        with torch.inference_mode():
            for start in range(0, len(texts), batch_size):
                tokens = self.tokenizer(texts[start : start + batch_size])
                chunks.append(self.model.encode_text(tokens, normalize=True).float().numpy())
        return np.concatenate(chunks) if chunks else np.zeros((0, self.embed_dim), np.float32)

    def encode_images(self, tensor) -> np.ndarray:
        """L2-normalised image embeddings of a preprocessed N×3×H×W batch (torch reference path)."""
        import torch

        with torch.inference_mode():
            images = torch.as_tensor(np.asarray(tensor), dtype=torch.float32)
            return self.model.encode_image(images, normalize=True).float().numpy()


def load_biomedclip(
    model: str | os.PathLike | None = None,
    config: str = "biomedclip",
    seed: int = DEMO_SEED,
    allow_demo: bool = True,
) -> ModelBundle:
    """BiomedCLIP with real weights when found (see module docs), else the demo model.

    A burnscope model folder or a MONAI bundle (``engines/model_folder.py``) brings its own
    architecture config and burn head; ``config`` is then not used. The torch model is built (and
    the weights read) on first use: see :class:`ModelBundle`."""
    from importlib.metadata import version

    from burnscope.engines.model_folder import find_model_folder, load_model_folder

    folder = find_model_folder(model or os.environ.get("HOLOSCAN_MODEL_PATH"))
    if folder is not None:
        return load_model_folder(folder)
    cfg = load_model_config(config)
    weights = find_weights(model)
    context_length = cfg["model_cfg"]["text_cfg"]["context_length"]
    if weights is not None:
        tokenizer_dir = weights.parent
        if not any((tokenizer_dir / f).is_file() for f in ("tokenizer.json", "vocab.txt")):
            raise FileNotFoundError(f"{tokenizer_dir}: no tokenizer files (tokenizer.json or vocab.txt) beside the weights")
        stat = weights.stat()
        fingerprint = _digest([cfg["model_cfg"], str(weights.resolve()), stat.st_size, int(stat.st_mtime)])
        info = ModelInfo(name=cfg["name"], weights=str(weights), demo=False)
        log.info("BiomedCLIP weights: %s", weights)
    else:
        if not allow_demo:
            raise FileNotFoundError("no BiomedCLIP weights found (--model, HOLOSCAN_MODEL_PATH, Hugging Face cache)")
        tokenizer_dir = demo_tokenizer_dir()
        fingerprint = _digest([cfg["model_cfg"], "demo", seed, version("torch"), str(tokenizer_dir.name)])
        info = ModelInfo(name=cfg["name"], weights=f"demo (random, seed {seed})", demo=True)
        log.warning("%s: no BiomedCLIP weights found, using seeded random weights", DEMO_BANNER)

    def build() -> tuple[Any, Any]:
        import open_clip

        state = _load_state_dict(weights) if weights is not None else None  # a bad file fails before the build
        torch_model = build_model(cfg, seed=seed)
        if state is not None:
            missing, unexpected = torch_model.load_state_dict(state, strict=False)
            # position_ids buffers differ between transformers versions; anything else is a mismatch.
            missing = [k for k in missing if not k.endswith("position_ids")]
            unexpected = [k for k in unexpected if not k.endswith("position_ids")]
            if missing or unexpected:
                raise ValueError(
                    f"{weights}: not BiomedCLIP weights for config {config!r} "
                    f"(missing {missing[:3]}..., unexpected {unexpected[:3]}...)"
                )
        return torch_model, open_clip.tokenizer.HFTokenizer(str(tokenizer_dir), context_length=context_length)

    bundle_cache = cache_root() / "models" / fingerprint
    bundle_cache.mkdir(parents=True, exist_ok=True)
    return ModelBundle(
        loader=build,
        info=info,
        config=cfg,
        fingerprint=fingerprint,
        cache_dir=bundle_cache,
        preprocess_cfg=cfg.get("preprocess_cfg", {}),
        tokenizer_dir=Path(tokenizer_dir),
    )
