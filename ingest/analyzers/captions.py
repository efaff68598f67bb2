"""Captions: one short sentence per image from a transformers vision-language model (BLIP, SmolVLM class).

Only the `full` profile has caption weights (fetched into `models_dir()` or given as a local `path`); offline
the analyzer is skipped. Generation cost follows output length, so images are downscaled first,
`max_new_tokens` stays small and images sharing a prompt go through `generate` as one batch. Known people and
places can be fed in (`run(images, context=...)`): BLIP continues them as a text prefix ("a photo of anna in
paris, ..."), chat VLMs get them in the instruction. The tests load a tiny random-weight BLIP saved with
`save_pretrained` through exactly this code.
"""

from __future__ import annotations

import json
import re
import threading
from pathlib import Path
from typing import Any, Sequence

from PIL import Image

from ingest.analyzers.base import ModelNotFound, set_torch_threads, to_rgb

DEFAULT_MAX_NEW_TOKENS = 24  # ~one sentence; every extra token is another decoder pass
DEFAULT_MAX_SIDE = 512  # BLIP sees 384 px, SmolVLM 512: decode/resize work above that is wasted
CHAT_INSTRUCTION = "Describe this photo in one short sentence."


def model_dir(spec: dict[str, Any]) -> Path:
    """The local model directory: `spec['path']`, else the hub id fetched into `models_dir()`."""
    if spec.get("path"):
        path = Path(str(spec["path"])).expanduser()
        if not (path / "config.json").is_file():
            raise ModelNotFound(f"caption model path {str(path)!r} has no config.json "
                                "(a folder written by save_pretrained or fetched from the hub)")
        return path
    from tools.models import models_dir

    name = str(spec.get("model") or "")
    local = models_dir() / name.replace("/", "--")
    if name and (local / "config.json").is_file():
        return local
    raise ModelNotFound(f"caption model {name or '(none)'} is not on this machine "
                        "(photo-engine models fetch, or set a local path in models.yaml)")


def prompt_for(context: dict[str, Any] | None, chat: bool) -> str | None:
    """The text given with one image: None (plain captioning), a BLIP prefix or a chat instruction.

    `context` keys: people (names), place (text). Names are the user's, so they go in verbatim.
    """
    people = [str(p) for p in (context or {}).get("people") or [] if str(p).strip()]
    place = str((context or {}).get("place") or "").strip()
    if chat:
        hints = []
        if people:
            hints.append("People in it: " + ", ".join(people) + ".")
        if place:
            hints.append(f"Place: {place}.")
        return " ".join([CHAT_INSTRUCTION, *hints])
    if not people and not place:
        return None
    prefix = "a photo of " + (_join(people) if people else "")
    if place:
        prefix += (" in " if people else "") + place
    return prefix.strip() + ","


def _join(names: list[str]) -> str:
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]


def _restore_names(text: str, context: dict[str, Any] | None) -> str:
    """BLIP's tokenizer lowercases the prefix; give the user's names back their spelling."""
    for name in [*((context or {}).get("people") or []), (context or {}).get("place") or ""]:
        if str(name).strip():
            text = re.sub(re.escape(str(name)), lambda _: str(name), text, flags=re.IGNORECASE)
    return text


def clean_caption(text: str) -> str:
    """First sentence, single spaces, capitalised, ending with a full stop."""
    text = re.sub(r"\s+", " ", text).strip(" ,;:")
    match = re.match(r"(.+?[.!?])(\s|$)", text)
    if match:
        text = match.group(1)
    if not text:
        return ""
    text = text[0].upper() + text[1:]
    return text if text[-1] in ".!?" else text + "."


class CaptionModel:
    """One caption per image; the processor and model load on the first `run` (once, under a lock)."""

    family = "captions"

    def __init__(self, path: Path, spec: dict[str, Any] | None = None) -> None:
        self.path = path
        self.spec = dict(spec or {})
        self.model_id = str(self.spec.get("model_id") or self.spec.get("model") or path.name)
        self.kind = _model_kind(path)  # "blip" (encoder-decoder, prefix prompt) or "chat" (instruction VLM)
        self.batch_size = int(self.spec.get("batch_size", 8))
        self.max_new_tokens = int(self.spec.get("max_new_tokens", DEFAULT_MAX_NEW_TOKENS))
        self.max_side = int(self.spec.get("max_side", DEFAULT_MAX_SIDE))
        self.num_beams = int(self.spec.get("num_beams", 1))  # greedy: beams multiply the decoder cost
        self._loaded: tuple[Any, Any, Any] | None = None
        self._lock = threading.Lock()

    def _load(self) -> tuple[Any, Any, Any]:
        """(processor, model, device)."""
        with self._lock:
            if self._loaded is None:
                import torch
                from transformers import AutoProcessor
                from transformers.utils import logging as hf_logging

                hf_logging.disable_progress_bar()  # no tqdm per load inside the CLI's own progress display
                set_torch_threads(self.spec)
                device = str(self.spec.get("device") or ("cuda" if torch.cuda.is_available() else "cpu"))
                dtype = torch.float16 if device.startswith("cuda") else torch.float32
                processor = AutoProcessor.from_pretrained(str(self.path), local_files_only=True)
                if self.kind == "blip":
                    from transformers import BlipForConditionalGeneration as model_class
                else:
                    from transformers import AutoModelForImageTextToText as model_class
                    tokenizer = getattr(processor, "tokenizer", None)
                    if tokenizer is not None:
                        tokenizer.padding_side = "left"  # decoder-only batches must end where generation starts
                model = model_class.from_pretrained(str(self.path), local_files_only=True, dtype=dtype)
                self._loaded = (processor, model.to(device).eval(), device)
            return self._loaded

    def run(self, images: list[Image.Image], context: Sequence[dict[str, Any] | None] | None = None) -> list[str]:
        """One short sentence per image, in order; `context[i]` may name people/place for image i."""
        if context is not None and len(context) != len(images):
            raise ValueError(f"{len(context)} contexts for {len(images)} images")
        prompts = [prompt_for(context[i] if context else None, self.kind == "chat") for i in range(len(images))]
        captions: list[str] = [""] * len(images)
        groups: dict[str | None, list[int]] = {}
        for index, prompt in enumerate(prompts):  # one prompt per generate call: no mixed-length padding
            groups.setdefault(prompt, []).append(index)
        for prompt, indices in groups.items():
            for start in range(0, len(indices), self.batch_size):
                chunk = indices[start:start + self.batch_size]
                texts = self._generate([self._downscale(images[i]) for i in chunk], prompt)
                for index, text in zip(chunk, texts):
                    captions[index] = clean_caption(_restore_names(text, context[index] if context else None))
        return captions

    def _downscale(self, image: Image.Image) -> Image.Image:
        image = to_rgb(image)
        if max(image.size) <= self.max_side:
            return image
        scale = self.max_side / max(image.size)
        size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
        return image.resize(size, Image.Resampling.BILINEAR, reducing_gap=3.0)

    def _generate(self, images: list[Image.Image], prompt: str | None) -> list[str]:
        import torch

        processor, model, device = self._load()
        if self.kind == "blip":
            kwargs: dict[str, Any] = {"images": images, "return_tensors": "pt"}
            if prompt:
                kwargs["text"] = [prompt] * len(images)
            inputs = processor(**kwargs)
        else:
            messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": prompt}]}]
            chat = processor.apply_chat_template(messages, add_generation_prompt=True)
            inputs = processor(images=[[image] for image in images], text=[chat] * len(images),
                               return_tensors="pt", padding=True)
        inputs = {key: (value.to(device, dtype=model.dtype) if value.is_floating_point() else value.to(device))
                  for key, value in inputs.items() if hasattr(value, "to")}
        with torch.inference_mode():
            output = model.generate(**inputs, max_new_tokens=self.max_new_tokens, num_beams=self.num_beams,
                                    do_sample=False)
        if self.kind == "chat":  # decoder-only models echo the prompt: keep only the new tokens
            output = output[:, inputs["input_ids"].shape[1]:]
        return processor.batch_decode(output, skip_special_tokens=True)


def _model_kind(path: Path) -> str:
    try:
        config = json.loads((path / "config.json").read_text())
    except (OSError, ValueError) as error:
        raise ModelNotFound(f"{path / 'config.json'} is unreadable: {error}") from None
    return "blip" if config.get("model_type") == "blip" else "chat"  # blip-2 and newer: AutoModelForImageTextToText


def load(spec: dict[str, Any] | None = None) -> CaptionModel:
    """The caption analyzer for a spec (`path`, or a hub `model` id fetched before); weights load on first use."""
    spec = dict(spec or {})
    return CaptionModel(model_dir(spec), spec)
