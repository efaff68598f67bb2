"""The `full` profile's loaders, on tiny random-weight models built here, offline, through the real code paths.

Captions: a tiny BLIP saved with `save_pretrained`; faces: a folder of tiny ONNX files shaped like
insightface's det_10g (SCRFD, 9 outputs) and w600k_r50 (ArcFace, 112 px in, 512 out); embeddings: a tiny
OpenCLIP architecture from a JSON config plus a state_dict file. Random weights: assert structure, not accuracy.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

DATA = Path(__file__).parent / "data"
ARCFACE_TEMPLATE = np.array([[38.2946, 51.6963], [73.5318, 51.5014], [56.0252, 71.7366],
                             [41.5493, 92.3655], [70.7299, 92.2041]], dtype=np.float32)


def _photos(size: int = 320) -> list[Image.Image]:
    """Real decoded photos, shrunk like thumbnails."""
    images = []
    for path in sorted((DATA / "photos").iterdir()) + [DATA / "faces" / "insightface_t1.jpg"]:
        with Image.open(path) as img:
            image = img.convert("RGB")
        image.thumbnail((size, size))
        images.append(image)
    return images


# ---------------------------------------------------------------- captions: tiny BLIP

def build_tiny_blip(folder: Path) -> Path:
    """A random-weight BLIP captioner (2-layer towers, 32 px images) plus its processor, as save_pretrained writes."""
    import torch
    from transformers import (BertTokenizer, BlipConfig, BlipForConditionalGeneration, BlipImageProcessor,
                              BlipProcessor)

    folder.mkdir(parents=True, exist_ok=True)
    words = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "[DEC]", "a", "photo", "of", "cat", "dog", "on", "the",
             "beach", "in", "paris", "anna", "and", "ben", ",", "."] + [f"w{i}" for i in range(30)]
    vocab = folder / "vocab.txt"
    vocab.write_text("\n".join(words) + "\n")
    tokenizer = BertTokenizer(str(vocab), bos_token="[DEC]")
    processor = BlipProcessor(image_processor=BlipImageProcessor(size={"height": 32, "width": 32}),
                              tokenizer=tokenizer)
    config = BlipConfig(
        vision_config=dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
                           image_size=32, patch_size=8),
        text_config=dict(vocab_size=len(words), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=2, encoder_hidden_size=32, max_position_embeddings=64,
                         bos_token_id=words.index("[DEC]"), pad_token_id=0, sep_token_id=words.index("[SEP]")),
        projection_dim=32)
    torch.manual_seed(0)
    BlipForConditionalGeneration(config).eval().save_pretrained(folder)
    processor.save_pretrained(folder)
    return folder


def test_tiny_blip_captions_one_sentence_per_image(tmp_path: Path) -> None:
    from ingest.analyzers import captions

    folder = build_tiny_blip(tmp_path / "tiny-blip")
    model = captions.load({"path": str(folder), "max_new_tokens": 6, "batch_size": 3})
    assert model.family == "captions" and model.kind == "blip" and model.model_id == "tiny-blip"
    images = _photos()
    started = time.perf_counter()
    out = model.run(images)
    seconds = time.perf_counter() - started
    assert len(out) == len(images) and all(isinstance(text, str) and text for text in out)
    assert all(text.endswith(".") and text[0].isupper() for text in out)
    assert len(images) / seconds > 0  # throughput is measurable (benchmarks/analyzers.py reports it)

    # known people and places go in as BLIP's text prefix, names keep the user's spelling
    hinted = model.run(images[:2], context=[{"people": ["Anna", "Ben"], "place": "Paris"}, None])
    assert hinted[0].startswith("A photo of Anna and Ben in Paris,")
    assert len(hinted) == 2 and hinted[1]


def test_caption_prompts_and_cleaning() -> None:
    from ingest.analyzers.captions import clean_caption, prompt_for

    assert prompt_for(None, chat=False) is None
    assert prompt_for({"people": ["Anna"], "place": "Oslo"}, chat=False) == "a photo of Anna in Oslo,"
    assert prompt_for({"place": "Oslo"}, chat=False) == "a photo of Oslo,"
    chat = prompt_for({"people": ["Anna", "Ben"]}, chat=True)
    assert chat.startswith("Describe this photo in one short sentence.") and "Anna, Ben" in chat
    assert clean_caption("  a dog on   the beach. and more text") == "A dog on the beach."
    assert clean_caption("a cat sitting on a sofa") == "A cat sitting on a sofa."


def test_caption_model_missing_says_how_to_get_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from ingest.analyzers import captions
    from ingest.analyzers.base import ModelNotFound

    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    with pytest.raises(ModelNotFound, match="models fetch"):
        captions.load({"model": "Salesforce/blip-image-captioning-base"})
    with pytest.raises(ModelNotFound, match="config.json"):
        captions.load({"path": str(tmp_path)})


# ---------------------------------------------------------------- faces: tiny insightface ONNX folder

def build_tiny_scrfd(path: Path, seed: int = 0) -> None:
    """det_10g-shaped SCRFD: input (1, 3, ?, ?); 9 rank-2 outputs, score/bbox/kps for strides 8, 16, 32 with
    2 anchors each, (H/s * W/s * 2, 1 | 4 | 10). insightface routes a model with >= 5 outputs to SCRFD and
    reads strides/anchors/keypoints from the output count (9). Small random weights plus biases chosen so
    only stride 32 fires, with 192 px boxes and a face-like 5-point layout (so alignment is well posed)."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(seed)
    nodes, inits, outputs = [], [], {}
    for stride in (8, 16, 32):
        for part, width in (("score", 1), ("bbox", 4), ("kps", 10)):
            if part == "score":
                bias = np.full(2, 1.0 if stride == 32 else -8.0, np.float32)
            elif part == "bbox":
                bias = np.full(8, 3.0, np.float32)  # distances in stride units: 96 px to each side
            else:
                points = (ARCFACE_TEMPLATE - 56.0) / 112.0 * 192.0 / stride
                bias = np.tile(points.reshape(-1), 2).astype(np.float32)
            weight = (rng.standard_normal((2 * width, 3, stride, stride)) * 1e-3).astype(np.float32)
            name = f"{part}_{stride}"
            inits += [numpy_helper.from_array(weight, f"{name}_w"), numpy_helper.from_array(bias, f"{name}_b"),
                      numpy_helper.from_array(np.array([-1, width], np.int64), f"{name}_shape")]
            nodes += [helper.make_node("Conv", ["input.1", f"{name}_w", f"{name}_b"], [f"{name}_conv"],
                                       kernel_shape=[stride, stride], strides=[stride, stride]),
                      helper.make_node("Transpose", [f"{name}_conv"], [f"{name}_nhwc"], perm=[0, 2, 3, 1]),
                      helper.make_node("Reshape", [f"{name}_nhwc", f"{name}_shape"],
                                       [f"{name}_raw" if part == "score" else name])]
            if part == "score":
                nodes.append(helper.make_node("Sigmoid", [f"{name}_raw"], [name]))
            outputs[name] = helper.make_tensor_value_info(name, TensorProto.FLOAT, [f"n{stride}", width])
    ordered = [outputs[f"{part}_{stride}"] for part in ("score", "bbox", "kps") for stride in (8, 16, 32)]
    graph = helper.make_graph(nodes, "tiny_scrfd",
                              [helper.make_tensor_value_info("input.1", TensorProto.FLOAT, [1, 3, "?", "?"])],
                              ordered, inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], ir_version=8)
    onnx.checker.check_model(model)
    onnx.save(model, str(path))


def build_tiny_arcface(path: Path, dim: int = 512, seed: int = 1) -> None:
    """w600k_r50-shaped recognition: input (N, 3, 112, 112) -> (N, 512); conv 16x16/16 -> relu -> linear."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(seed)
    inits = [numpy_helper.from_array((rng.standard_normal((8, 3, 16, 16)) * 0.05).astype(np.float32), "conv_w"),
             numpy_helper.from_array(np.zeros(8, np.float32), "conv_b"),
             numpy_helper.from_array((rng.standard_normal((8 * 7 * 7, dim)) * 0.05).astype(np.float32), "fc_w"),
             numpy_helper.from_array(np.zeros(dim, np.float32), "fc_b")]
    nodes = [helper.make_node("Conv", ["input.1", "conv_w", "conv_b"], ["conv"], kernel_shape=[16, 16],
                              strides=[16, 16]),
             helper.make_node("Relu", ["conv"], ["relu"]),
             helper.make_node("Flatten", ["relu"], ["flat"], axis=1),
             helper.make_node("Gemm", ["flat", "fc_w", "fc_b"], ["embedding"])]
    graph = helper.make_graph(nodes, "tiny_arcface",
                              [helper.make_tensor_value_info("input.1", TensorProto.FLOAT, ["N", 3, 112, 112])],
                              [helper.make_tensor_value_info("embedding", TensorProto.FLOAT, ["N", dim])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], ir_version=8)
    onnx.checker.check_model(model)
    onnx.save(model, str(path))


@pytest.fixture
def tiny_buffalo(tmp_path: Path) -> Path:
    pytest.importorskip("insightface")
    folder = tmp_path / "buffalo_tiny"
    folder.mkdir()
    build_tiny_scrfd(folder / "det_10g.onnx")
    build_tiny_arcface(folder / "w600k_r50.onnx")
    return folder


def test_insightface_folder_detects_and_describes(tiny_buffalo: Path) -> None:
    from ingest.analyzers import faces_insight
    from ingest.analyzers.faces import FaceResult

    model = faces_insight.load({"path": str(tiny_buffalo), "providers": ["CPUExecutionProvider"]})
    assert model.family == "faces" and model.model_id == "insightface-buffalo_tiny"
    images = _photos(640)
    results = model.run(images)
    assert len(results) == len(images)
    assert model.dim == 512
    faces = [face for per_image in results for face in per_image]
    assert faces, "the tiny detector fires on every image by construction"
    for image, per_image in zip(images, results):
        for face in per_image:
            assert isinstance(face, FaceResult)
            x, y, w, h = face.box
            assert 0 <= x <= image.width and 0 <= y <= image.height and w > 0 and h > 0
            assert x + w <= image.width + 1e-3 and y + h <= image.height + 1e-3
            assert 0.5 <= face.score <= 1.0 and 0.0 <= face.quality <= 1.0
            assert len(face.landmarks) == 5
            assert face.embedding.dtype == np.float32 and face.embedding.shape == (512,)
            assert abs(float(np.linalg.norm(face.embedding)) - 1.0) < 1e-4
        assert [f.score for f in per_image] == sorted((f.score for f in per_image), reverse=True)


def test_insightface_batched_recognition_matches_one_by_one(tiny_buffalo: Path) -> None:
    from ingest.analyzers import faces_insight

    image = _photos(640)[0]
    batched = faces_insight.load({"path": str(tiny_buffalo), "batch_size": 64}).run([image])[0]
    single = faces_insight.load({"path": str(tiny_buffalo), "batch_size": 1}).run([image])[0]
    assert len(batched) == len(single) > 0
    for a, b in zip(batched, single):
        assert np.allclose(a.embedding, b.embedding, atol=1e-5)


def test_insightface_folder_errors(tmp_path: Path, tiny_buffalo: Path) -> None:
    from ingest.analyzers import faces_insight
    from ingest.analyzers.base import ModelNotFound

    with pytest.raises(ModelNotFound, match="no \\*.onnx"):
        faces_insight.load({"path": str(tmp_path / "empty")})
    nested = tmp_path / "zip-root"
    nested.mkdir()
    (tiny_buffalo).rename(nested / "buffalo_l")  # a zip that unpacked into a subfolder
    assert faces_insight.load({"path": str(nested)}).folder == nested / "buffalo_l"
    detector_only = tmp_path / "detector-only"
    detector_only.mkdir()
    build_tiny_scrfd(detector_only / "det_10g.onnx")
    with pytest.raises(ModelNotFound, match="no recognition model"):
        faces_insight.load({"path": str(detector_only)}).run(_photos()[:1])


# ---------------------------------------------------------------- embeddings: tiny OpenCLIP

TINY_CLIP = {
    "embed_dim": 32,
    "vision_cfg": {"image_size": 64, "layers": 2, "width": 64, "patch_size": 16},
    "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 64, "heads": 4, "layers": 2},
}


def test_tiny_openclip_through_embed_load(tmp_path: Path) -> None:
    import open_clip
    import torch

    from ingest.analyzers import embed

    config = tmp_path / "tiny-test-clip.json"
    config.write_text(json.dumps(TINY_CLIP))
    open_clip.add_model_config(str(config))
    model, _, _ = open_clip.create_model_and_transforms("tiny-test-clip", pretrained=None)
    weights = tmp_path / "tiny-test-clip.pt"
    torch.save(model.state_dict(), weights)

    clip = embed.load({"model": "tiny-test-clip", "path": str(weights), "config": str(config)})
    assert isinstance(clip, embed.ClipEmbedder) and clip.text_aligned is True
    images = _photos()
    vectors = clip.run(images)
    texts = clip.encode_text(["a cat", "a cup of coffee", "a rocket"])
    assert len(vectors) == len(images) and clip.dim == 32
    assert all(v.shape == (32,) and v.dtype == np.float32 for v in vectors)
    assert texts.shape == (3, 32)
    assert np.allclose(np.linalg.norm(np.stack(vectors), axis=1), 1.0, atol=1e-5)
    assert np.allclose(np.linalg.norm(texts, axis=1), 1.0, atol=1e-5)
    # the file really is what got loaded: same weights, same image vector
    with torch.inference_mode():
        _, _, preprocess = open_clip.create_model_and_transforms("tiny-test-clip", pretrained=None)
        direct = model.eval().encode_image(preprocess(images[0]).unsqueeze(0)).numpy()[0]
    assert np.allclose(vectors[0], direct / np.linalg.norm(direct), atol=1e-5)
    # the text tower stops at EOT (fast path) and still gives the full tower's vectors
    tokens = open_clip.get_tokenizer("tiny-test-clip")(["a cat", "a cup of coffee", "a rocket"])
    with torch.inference_mode():
        full = model.encode_text(tokens).numpy()
        assert embed.encode_text_to_eot(model, tokens) is not None
    assert np.allclose(texts, full / np.linalg.norm(full, axis=1, keepdims=True), atol=1e-5)


# ---------------------------------------------------------------- fetching the full profile, choosing a profile

@pytest.fixture
def models_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """`tools.models.models_dir()` inside tmp_path (platformdirs follows XDG_DATA_HOME)."""
    from tools.models import models_dir

    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    root = models_dir()
    assert str(root).startswith(str(tmp_path))
    return root


def _fake_fetched(root: Path, profile: str = "full") -> None:
    """Folders with a manifest for every hub model of a profile, as a finished fetch leaves them."""
    from catalog.model_config import load_models_file
    from tools.fetch import MANIFEST, MANIFEST_KEY, plan_for

    for family, spec in load_models_file()["profiles"][profile].items():
        plan = plan_for(family, spec)
        if plan is None:
            continue
        folder = plan.target(root)
        folder.mkdir(parents=True)
        (folder / "weights.bin").write_bytes(b"x" * 10)
        (folder / MANIFEST).write_text(json.dumps({MANIFEST_KEY: 1, "source": plan.source,
                                                   "files": {"weights.bin": {"size": 10, "sha256": "-"}}}))


def test_fetch_offline_fails_fast_naming_every_model(models_root: Path) -> None:
    from tools.fetch import FetchError, fetch_models

    started = time.perf_counter()
    with pytest.raises(FetchError) as caught:
        fetch_models("full", progress=False)
    assert time.perf_counter() - started < 5
    message = str(caught.value)
    for name in ("ViT-B-32", "Salesforce/blip-image-captioning-base", "buffalo_l", "Qwen2.5-3B-Instruct"):
        assert name in message
    assert "HF_HUB_OFFLINE" in message and "'offline' profile" in message and "models fetch" in message
    assert len(caught.value.failed) == 4
    assert not any(models_root.glob("*")) if models_root.exists() else True  # nothing half-written


def test_fetch_unreachable_hub_fails_fast(models_root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from huggingface_hub import constants

    from tools.fetch import FetchError, fetch_models

    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")  # discard port on this machine: refused at once
    started = time.perf_counter()
    with pytest.raises(FetchError, match="unreachable"):
        fetch_models("full", progress=False, timeout=2)
    assert time.perf_counter() - started < 4


def test_fetch_already_present_does_not_download(models_root: Path) -> None:
    from tools.fetch import fetch_models, is_present, plan_for

    _fake_fetched(models_root)
    rows = fetch_models("full", progress=False)  # HF_HUB_OFFLINE=1: any download attempt would raise
    assert {row["status"] for row in rows} == {"present"} and len(rows) == 4
    # a manifest for another source (say a different pretrained tag) means: fetch again
    plan = plan_for("embed", {"model": "ViT-B-32", "pretrained": "datacomp_xl_s13b_b90k"})
    assert plan is not None and not is_present(plan, models_root)
    # packages and local paths are never fetched
    assert fetch_models("offline", progress=False)[0]["status"] == "package"


def test_fetch_zip_pack_verifies_and_loads(models_root: Path, tmp_path: Path, tiny_buffalo: Path) -> None:
    """The insightface path end to end, from a local archive URL: unpack, flatten, manifest, then load by name."""
    import zipfile

    from ingest.analyzers import faces_insight
    from tools.fetch import Plan, _fetch_one, is_present, read_manifest

    archive = tmp_path / "tiny_pack.zip"
    with zipfile.ZipFile(archive, "w") as zipped:
        for path in tiny_buffalo.glob("*.onnx"):
            zipped.write(path, f"tiny_pack/{path.name}")  # zoo archives may hold one subfolder
    plan = Plan(family="faces", model="tiny_pack", kind="zip", source="test:tiny_pack", url=archive.as_uri())
    folder = _fetch_one(plan, models_root, progress=False, timeout=2)
    assert sorted(p.name for p in folder.glob("*.onnx")) == ["det_10g.onnx", "w600k_r50.onnx"]
    manifest = read_manifest(folder)
    assert manifest and manifest["verified"] == "loadable" and set(manifest["files"]) == {
        "det_10g.onnx", "w600k_r50.onnx"}
    assert is_present(plan, models_root)
    model = faces_insight.load({"model": "tiny_pack"})
    assert model.folder == folder and model.run(_photos()[:1])[0][0].embedding.shape == (512,)


def test_verify_checks_hub_digests(tmp_path: Path) -> None:
    from tools.fetch import _verify

    (tmp_path / "config.json").write_text('{"a": 1}')
    (tmp_path / "note.txt").write_bytes(b"hello\n")
    files = _verify(tmp_path, {"note.txt": ("git-blob", "ce013625030ba8dba906f756967f9e9ca394464a")})
    assert files["note.txt"]["size"] == 6
    with pytest.raises(ValueError, match="does not match"):
        _verify(tmp_path, {"note.txt": ("sha256", "0" * 64)})
    (tmp_path / "model.safetensors").write_bytes(b"<html>error</html>")
    with pytest.raises(ValueError, match="safetensors"):
        _verify(tmp_path, {})


def test_resolve_profile_falls_back_to_offline(models_root: Path) -> None:
    from ingest.analyzers.select import resolve_profile

    profile, warning = resolve_profile("full")
    assert profile == "offline"
    assert warning and warning.startswith("full models not present (")
    assert "captions: Salesforce/blip-image-captioning-base" in warning and "photo-engine models fetch" in warning
    started = time.perf_counter()
    assert resolve_profile("full", fetch=True)[0] == "offline"  # offline: the fetch attempt fails fast
    assert time.perf_counter() - started < 5
    _fake_fetched(models_root)
    assert resolve_profile("full") == ("full", None)
    assert resolve_profile("offline")[0] == "offline"


@pytest.mark.slow
def test_mobileclip_is_reparameterized_with_the_same_vectors(tmp_path: Path) -> None:
    """MobileCLIP's training-time branches are folded for inference: same image vector, fewer modules."""
    import open_clip
    import torch

    from ingest.analyzers import embed

    reference, _, preprocess = open_clip.create_model_and_transforms("MobileCLIP-S1", pretrained=None)
    weights = tmp_path / "mobileclip-s1.pt"
    torch.save(reference.state_dict(), weights)
    clip = embed.load({"model": "MobileCLIP-S1", "path": str(weights)})
    folded, _, _ = clip._load()
    assert sum(1 for _ in folded.modules()) < sum(1 for _ in reference.modules())
    image = _photos()[0]
    with torch.inference_mode():
        direct = reference.eval().encode_image(preprocess(image).unsqueeze(0)).numpy()[0]
    assert np.allclose(clip.run([image])[0], direct / np.linalg.norm(direct), atol=1e-3)
