"""GPU workloads' models, with random weights (no download): W3 ResNet-50, W2G MiniLM-shaped.

W3: a ResNet-50 (torchvision's definition) in fp16, channels-last, fed raw uint8 224x224x3
images; the pipeline is host uint8 -> device -> NCHW half -> normalize -> forward -> top-1.
W2G: a BERT with all-MiniLM-L6-v2's shape (6 layers, 384 wide, 12 heads) in fp16 with a
WordPiece tokenizer over a synthetic vocabulary; tokenize -> forward -> mean-pool -> host.

`tiny=True` swaps in a few-layer CNN on 32x32 images and a 2-layer, 64-wide BERT so the same
code path runs on a CPU in seconds (the import and wiring check CI-less machines can do).
"""

from __future__ import annotations

import string
from typing import Any

import numpy as np

W3_SIDE = 224
TINY_SIDE = 32
MEAN = (0.485 * 255, 0.456 * 255, 0.406 * 255)
STD = (0.229 * 255, 0.224 * 255, 0.225 * 255)


def image_side(tiny: bool) -> int:
    """Height and width of a W3 image."""
    return TINY_SIDE if tiny else W3_SIDE


def sample_image(tiny: bool, seed: int = 0) -> bytes:
    """One raw HxWx3 uint8 image."""
    side = image_side(tiny)
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, size=(side, side, 3), dtype=np.uint8).tobytes()


class ResNetPipeline:
    """W3: uint8 images in, top-1 class ids out."""

    def __init__(self, device: str, *, tiny: bool = False) -> None:
        import torch

        self.torch = torch
        self.device = torch.device(device)
        self.side = image_side(tiny)
        self.dtype = torch.float16 if self.device.type == "cuda" else torch.float32
        torch.manual_seed(0)
        if tiny:
            model: Any = torch.nn.Sequential(
                torch.nn.Conv2d(3, 16, 3, stride=2, padding=1),
                torch.nn.ReLU(),
                torch.nn.Conv2d(16, 32, 3, stride=2, padding=1),
                torch.nn.ReLU(),
                torch.nn.AdaptiveAvgPool2d(1),
                torch.nn.Flatten(),
                torch.nn.Linear(32, 1000),
            )
        else:
            import torchvision

            model = torchvision.models.resnet50(weights=None)
        self.model = model.eval().to(
            self.device, dtype=self.dtype, memory_format=torch.channels_last
        )
        self.mean = torch.tensor(MEAN, device=self.device, dtype=self.dtype).view(1, 3, 1, 1)
        self.std = torch.tensor(STD, device=self.device, dtype=self.dtype).view(1, 3, 1, 1)

    def predict(self, images: list[bytes]) -> list[int]:
        """Top-1 class of each raw image."""
        torch = self.torch
        host = torch.frombuffer(bytearray(b"".join(images)), dtype=torch.uint8)
        host = host.view(len(images), self.side, self.side, 3)
        if self.device.type == "cuda":
            host = host.pin_memory()
        with torch.inference_mode():
            x = host.to(self.device, non_blocking=True).permute(0, 3, 1, 2)
            x = ((x.to(self.dtype) - self.mean) / self.std).contiguous(
                memory_format=torch.channels_last
            )
            top: list[int] = self.model(x).argmax(dim=1).tolist()
        return top


def synthetic_vocab(size: int) -> dict[str, int]:
    """A WordPiece vocabulary with BERT's special tokens, letters, and filler words."""
    tokens = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    tokens += list(string.ascii_lowercase + string.digits + string.punctuation)
    tokens += [f"##{c}" for c in string.ascii_lowercase + string.digits]
    # Common words of the bench sentence, so it tokenizes to whole words as in a real vocab.
    words = "the quick brown fox jumps over lazy dog a an of to in is it that for on with as"
    tokens += [w for w in words.split(" ") if w not in tokens]
    tokens += [f"w{i}" for i in range(max(0, size - len(tokens)))]
    return {t: i for i, t in enumerate(tokens)}


class MiniLMShaped:
    """W2G: sentences in, 384-float (64 when tiny) normalized embeddings out."""

    def __init__(self, device: str, *, tiny: bool = False) -> None:
        import torch
        from tokenizers import Tokenizer, normalizers, pre_tokenizers
        from tokenizers.models import WordPiece
        from tokenizers.processors import TemplateProcessing
        from transformers import BertConfig, BertModel

        self.torch = torch
        self.device = torch.device(device)
        self.dtype = torch.float16 if self.device.type == "cuda" else torch.float32
        vocab = synthetic_vocab(1000 if tiny else 30522)
        tok = Tokenizer(WordPiece(vocab, unk_token="[UNK]"))
        tok.normalizer = normalizers.BertNormalizer(lowercase=True)
        tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
        tok.post_processor = TemplateProcessing(
            single="[CLS] $A [SEP]", special_tokens=[("[CLS]", 2), ("[SEP]", 3)]
        )
        tok.enable_padding(pad_id=0, pad_token="[PAD]")
        tok.enable_truncation(max_length=128)
        self.tokenizer = tok
        hidden, layers, heads = (64, 2, 2) if tiny else (384, 6, 12)
        config = BertConfig(
            vocab_size=len(vocab),
            hidden_size=hidden,
            num_hidden_layers=layers,
            num_attention_heads=heads,
            intermediate_size=hidden * 4,
        )
        torch.manual_seed(0)
        self.model = BertModel(config).eval().to(self.device, dtype=self.dtype)
        self.dim = hidden

    def embed(self, texts: list[str]) -> np.ndarray:
        """(len(texts), dim) float32, mean-pooled and normalized."""
        torch = self.torch
        encoded = self.tokenizer.encode_batch(texts)
        ids = torch.tensor([e.ids for e in encoded])
        mask = torch.tensor([e.attention_mask for e in encoded])
        with torch.inference_mode():
            ids = ids.to(self.device, non_blocking=True)
            mask = mask.to(self.device, non_blocking=True)
            hidden = self.model(input_ids=ids, attention_mask=mask).last_hidden_state
            m = mask.unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * m).sum(1) / m.sum(1).clamp(min=1)
            pooled = torch.nn.functional.normalize(pooled.float(), dim=1)
            out: np.ndarray = pooled.cpu().numpy()
        return out
