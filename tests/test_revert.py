"""`remap revert`: transformers folders back into their original checkpoints, checked against the original code.

- Round trip one way: original -> transformers -> original (--like the original), for every shipped
  rule file and every layout it reads: every tensor bit-identical, every other entry equal.
- Round trip the other way: transformers -> original -> transformers gives byte-identical weights.
- Changed weights, the test that matters (a round trip alone passes with a no-op): noise in every
  parameter of the transformers model, save_pretrained, revert, then s3prl's reference model built
  from the reverted file (load_state_dict strict) must match the changed transformers model.
- Every error path is one line, exit 1, and writes nothing.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch

from remap.io.readers import read_checkpoint
from remap.io.source import Record, StoredTensor
from tests.conftest import EXAMPLE, RULES, TINY

ROOT = Path(__file__).resolve().parent.parent


def _distilhubert(path: Path, layout: str) -> None:
    from tests.reference import build_distiller, save_s3prl_checkpoint

    save_s3prl_checkpoint(build_distiller(TINY), TINY, path)


def _hubert(path: Path, layout: str) -> None:
    from tests.test_family_hubert import BASE, build_s3prl, save

    save(layout, path, build_s3prl(BASE), BASE)


def _wav2vec2(path: Path, layout: str) -> None:
    from tests.test_family_wav2vec2 import write

    write(layout, "base", path)


def _wav2vec2_ctc(path: Path, layout: str) -> None:
    from tests.test_family_wav2vec2 import save_finetuned, save_finetuned_args

    if layout == "fairseq-finetuned":
        save_finetuned(path, "base")
    else:
        save_finetuned_args(path, "base", omegaconf_w2v_args=layout == "fairseq-args-finetuned-hydra")


def _wavlm(path: Path, layout: str) -> None:
    from tests.test_family_wavlm import BASE, build_wavlm, save_fairseq_trainer, save_official

    model = build_wavlm(BASE)
    if layout == "fairseq":
        save_fairseq_trainer(path, model, BASE)
    else:
        save_official(path, model, BASE, layout)


def _data2vec(path: Path, layout: str) -> None:
    from tests.test_family_data2vec_audio import VARIANTS, build, save

    config = next(iter(VARIANTS.values()))
    save(path, layout, build(config), config)


FAMILIES: list[tuple[str, str, Callable[[Path, str], None]]] = [
    ("distilhubert", "default", _distilhubert),
    *[("hubert", layout, _hubert) for layout in ("fairseq", "fairseq-args", "s3prl")],
    *[("wav2vec2", layout, _wav2vec2) for layout in ("fairseq", "fairseq-args", "s3prl")],
    *[("wav2vec2-ctc", layout, _wav2vec2_ctc)
      for layout in ("fairseq-finetuned", "fairseq-args-finetuned", "fairseq-args-finetuned-hydra")],
    *[("wavlm", layout, _wavlm) for layout in ("official-dict", "official-dictconfig", "fairseq")],
    *[("data2vec-audio", layout, _data2vec) for layout in ("fairseq", "fairseq-args", "s3prl")],
]
IDS = [f"{name}-{layout}" for name, layout, _ in FAMILIES]


def leaves(path: Path) -> dict[str, Any]:
    """Every leaf of a checkpoint as data: tensors by their bytes, records by class and state."""
    found = {}
    for key, leaf in read_checkpoint(path).walk():
        if isinstance(leaf, StoredTensor):
            found[key] = (leaf.info, leaf.read().tobytes())
        elif isinstance(leaf, Record):
            found[key] = (leaf.class_name, repr(leaf.state))
        else:
            found[key] = repr(leaf)
    return found


@pytest.mark.parametrize("rules, layout, writer", FAMILIES, ids=IDS)
def test_round_trips_both_ways_are_exact(rules: str, layout: str, writer: Any, cli, tmp_path: Path) -> None:
    """original -> transformers -> original (--like) is bit-identical, and so is transformers -> original ->
    transformers (the reverted file has the original's name: the output's metadata records it)."""
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    original, back = tmp_path / "a" / "model.pt", tmp_path / "b" / "model.pt"
    writer(original, layout)
    result = cli("apply", rules, original, "-o", tmp_path / "hf")
    assert result.code == 0, result.err
    recorded = layout.split("-dict", maxsplit=1)[0]  # wavlm's official file, with a dict or a DictConfig cfg
    assert f'"layout": "{recorded}"' in (tmp_path / "hf" / "remap-provenance.json").read_text()
    result = cli("revert", rules, tmp_path / "hf", "-o", back, "--like", original)
    assert result.code == 0, result.err
    assert leaves(back) == leaves(original)
    assert cli("apply", rules, back, "-o", tmp_path / "hf2").code == 0
    assert (tmp_path / "hf2" / "model.safetensors").read_bytes() == (tmp_path / "hf" / "model.safetensors").read_bytes()


def perturbed_copy(hf_dir: Path, out: Path, seed: int = 5) -> Any:
    """Change every parameter of the converted model, as fine-tuning would, and save it with transformers."""
    import transformers

    config = transformers.AutoConfig.from_pretrained(hf_dir)
    model = getattr(transformers, config.architectures[0]).from_pretrained(hf_dir).eval()
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for param in model.parameters():
            param.add_(torch.randn(param.shape, generator=generator) * 0.05)
    model.save_pretrained(out)
    for name in ("preprocessor_config.json",):
        if (hf_dir / name).exists():
            shutil.copy(hf_dir / name, out / name)
    return model


ONE_LAYOUT = ("default", "fairseq", "fairseq-finetuned")


@pytest.mark.parametrize("rules, layout, writer", [f for f in FAMILIES if f[1] in ONE_LAYOUT],
                         ids=[i for i, f in zip(IDS, FAMILIES, strict=True) if f[1] in ONE_LAYOUT])
def test_changed_weights_come_back_into_the_original_code(rules: str, layout: str, writer: Any, cli,
                                                         tmp_path: Path) -> None:
    """remap verify builds s3prl's model from the reverted file (strictly) and runs both on the same audio."""
    from remap import load_rules
    from remap.verify import verify

    original = tmp_path / "original.pt"
    writer(original, layout)
    assert cli("apply", rules, original, "-o", tmp_path / "hf").code == 0
    perturbed_copy(tmp_path / "hf", tmp_path / "tuned")
    result = cli("revert", rules, tmp_path / "tuned", "-o", tmp_path / "back.pt", "--like", original)
    assert result.code == 0, result.err
    report = verify(load_rules(rules), tmp_path / "back.pt", tmp_path / "tuned", tolerance=1e-5)
    assert report.ok, report.diffs
    before = verify(load_rules(rules), original, tmp_path / "tuned", tolerance=1e-5)
    assert not before.ok  # the change is real: the original checkpoint no longer matches the tuned model


def test_the_reverted_distiller_loads_as_s3prl_loads_its_own_files(cli, tmp_path: Path) -> None:
    """torch.load (weights_only, with argparse.Namespace allowed) and DistillerModel.load_state_dict(strict=True)."""
    from tests.reference import load_reference

    assert cli("apply", RULES, EXAMPLE, "-o", tmp_path / "hf").code == 0
    perturbed_copy(tmp_path / "hf", tmp_path / "tuned")
    assert cli("revert", RULES, tmp_path / "tuned", "-o", tmp_path / "back.ckpt", "--like", EXAMPLE).code == 0
    model = load_reference(tmp_path / "back.ckpt")
    original = load_reference(EXAMPLE)
    changed = [k for k, v in model.state_dict().items() if not torch.equal(v, original.state_dict()[k])]
    assert changed and all(not k.startswith("output_layer") for k in changed)  # heads kept from --like


def test_a_folder_of_another_architecture_is_refused_in_one_line(cli, tmp_path: Path) -> None:
    from tests.reference import build_distiller, save_s3prl_checkpoint

    other = {**TINY, "encoder_layers": 1}
    save_s3prl_checkpoint(build_distiller(other), other, tmp_path / "other.ckpt")
    assert cli("apply", RULES, tmp_path / "other.ckpt", "-o", tmp_path / "hf").code == 0
    result = cli("revert", RULES, tmp_path / "hf", "-o", tmp_path / "back.ckpt", "--like", EXAMPLE)
    assert result.code == 1 and result.err.count("\n") == 1, result.err
    assert result.err.startswith(f"error: {tmp_path / 'hf'} is not a conversion of a checkpoint like "
                                 "distilhubert-tiny.ckpt: ")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["hf", "other.ckpt"]


def test_without_like_and_without_a_reverse_section_says_what_is_missing(cli, tmp_path: Path) -> None:
    from tests.test_family_hubert import BASE, build_s3prl, save

    save("fairseq", tmp_path / "h.pt", build_s3prl(BASE), BASE)
    assert cli("apply", "hubert", tmp_path / "h.pt", "-o", tmp_path / "hf").code == 0
    result = cli("revert", "hubert", tmp_path / "hf", "-o", tmp_path / "back.pt")
    assert result.code == 1 and result.err.count("\n") == 1
    assert "has no 'reverse' section, so the original config is unknown; pass --like" in result.err
    assert not (tmp_path / "back.pt").exists()


def test_an_existing_output_is_refused_without_force_and_inputs_never_replaced(cli, tmp_path: Path) -> None:
    assert cli("apply", RULES, EXAMPLE, "-o", tmp_path / "hf").code == 0
    (tmp_path / "back.ckpt").write_text("mine")
    result = cli("revert", RULES, tmp_path / "hf", "-o", tmp_path / "back.ckpt", "--like", EXAMPLE)
    assert (result.code, result.err) == (1, f"error: {tmp_path / 'back.ckpt'}: output file already exists; pass "
                                            "--force to replace it\n")
    assert (tmp_path / "back.ckpt").read_text() == "mine"
    copy = tmp_path / "like.ckpt"
    shutil.copy(EXAMPLE, copy)
    result = cli("revert", RULES, tmp_path / "hf", "-o", copy, "--like", copy, "--force")
    assert (result.code, result.err) == (1, f"error: {copy}: the output would replace an input; choose another "
                                            "file\n")
    assert copy.read_bytes() == EXAMPLE.read_bytes()
