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

import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch

from remap.io.readers import read_checkpoint
from remap.io.source import Record, StoredTensor
from remap.tensors import TensorInfo
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


def _whisper(path: Path, layout: str) -> None:
    from tests.whisper_fixtures import dims, write

    write(path, dims(vocab=layout))


def _conformer(path: Path, layout: str) -> None:
    from tests.conformer_fixtures import TINY, write

    positions, _, layout = layout.partition("-")
    write(layout, {**TINY, "pos_enc_type": positions}, path)


def _mimi(path: Path, layout: str) -> Path:
    from tests.codec_fixtures import build_mimi, save_mimi_released, tiny_mimi_config

    config = tiny_mimi_config()
    save_mimi_released(build_mimi(config), path, fused=layout == "released")
    (path.parent / "mimi.json").write_text(json.dumps(config))
    return path.parent / "mimi.json"


def _encodec(path: Path, layout: str) -> None:
    from tests.codec_fixtures import build_encodec, save_encodec_released

    save_encodec_released(build_encodec(layout), path)


def _dac(path: Path, layout: str) -> None:
    from tests.codec_fixtures import DAC_TINY, build_dac, save_dac_released

    save_dac_released(build_dac(DAC_TINY), DAC_TINY, path)


FAMILIES: list[tuple[str, str, Callable[[Path, str], Path | None]]] = [
    ("distilhubert", "default", _distilhubert),
    *[("hubert", layout, _hubert) for layout in ("fairseq", "fairseq-args", "s3prl")],
    *[("wav2vec2", layout, _wav2vec2) for layout in ("fairseq", "fairseq-args", "s3prl")],
    *[("wav2vec2-ctc", layout, _wav2vec2_ctc)
      for layout in ("fairseq-finetuned", "fairseq-args-finetuned", "fairseq-args-finetuned-hydra")],
    *[("wavlm", layout, _wavlm) for layout in ("official-dict", "official-dictconfig", "fairseq")],
    *[("data2vec-audio", layout, _data2vec) for layout in ("fairseq", "fairseq-args", "s3prl")],
    *[("whisper", vocab, _whisper) for vocab in ("multilingual", "english")],
    *[("wav2vec2-conformer", f"{positions}-{layout}", _conformer)
      for positions in ("rope", "rel_pos") for layout in ("fairseq", "fairseq-args", "s3prl")],
    *[("mimi", layout, _mimi) for layout in ("released", "moshi")],
    *[("encodec", style, _encodec) for style in ("24khz", "48khz")],
    ("dac", "default", _dac),
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


def _config_args(config: Path | None) -> list[str | Path]:
    return [] if config is None else ["--source-config", config]


def _original(tmp_path: Path, rules: str, layout: str, writer: Any) -> tuple[Path, list[str | Path]]:
    """The family's checkpoint under ``tmp_path/a`` (safetensors where its framework releases that)."""
    (tmp_path / "a").mkdir(exist_ok=True)
    original = tmp_path / "a" / ("model.safetensors" if rules == "mimi" else "model.pt")
    return original, _config_args(writer(original, layout))


@pytest.mark.parametrize("rules, layout, writer", FAMILIES, ids=IDS)
def test_round_trips_both_ways_are_exact(rules: str, layout: str, writer: Any, cli, tmp_path: Path) -> None:
    """original -> transformers -> original (--like) is bit-identical, and so is transformers -> original ->
    transformers (the reverted file has the original's name: the output's metadata records it)."""
    from remap import load_rules

    original, config = _original(tmp_path, rules, layout, writer)
    (tmp_path / "b").mkdir()
    back = tmp_path / "b" / original.name
    result = cli("apply", rules, original, "-o", tmp_path / "hf", *config)
    assert result.code == 0, result.err
    recorded = layout.split("-dict", maxsplit=1)[0]  # wavlm's official file, with a dict or a DictConfig cfg
    if recorded in {lay.name for lay in load_rules(rules).source.layouts}:
        assert f'"layout": "{recorded}"' in (tmp_path / "hf" / "remap-provenance.json").read_text()
    result = cli("revert", rules, tmp_path / "hf", "-o", back, "--like", original, *config)
    assert result.code == 0, result.err
    assert leaves(back) == leaves(original)
    assert cli("apply", rules, back, "-o", tmp_path / "hf2", *config).code == 0
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


ONE_LAYOUT = ("default", "fairseq", "fairseq-finetuned", "multilingual", "rope-fairseq", "rel_pos-s3prl", "released",
              "moshi", "24khz")


@pytest.mark.parametrize("rules, layout, writer", [f for f in FAMILIES if f[1] in ONE_LAYOUT],
                         ids=[i for i, f in zip(IDS, FAMILIES, strict=True) if f[1] in ONE_LAYOUT])
def test_changed_weights_come_back_into_the_original_code(rules: str, layout: str, writer: Any, cli,
                                                         tmp_path: Path) -> None:
    """remap verify builds the original project's model from the reverted file (strictly: s3prl, fairseq's
    modules, openai-whisper, moshi, encodec, descript-audio-codec) and runs both on the same input."""
    from remap import load_rules
    from remap.verify import verify

    original, config = _original(tmp_path, rules, layout, writer)
    source_config = config[-1] if config else None
    assert cli("apply", rules, original, "-o", tmp_path / "hf", *config).code == 0
    perturbed_copy(tmp_path / "hf", tmp_path / "tuned")
    back = tmp_path / f"back{original.suffix}"
    result = cli("revert", rules, tmp_path / "tuned", "-o", back, "--like", original, *config)
    assert result.code == 0, result.err
    report = verify(load_rules(rules), back, tmp_path / "tuned", tolerance=1e-5, source_config=source_config)
    assert report.ok, report.diffs
    before = verify(load_rules(rules), original, tmp_path / "tuned", tolerance=1e-5, source_config=source_config)
    assert not before.ok  # the change is real: the original checkpoint no longer matches the tuned model


WITHOUT_LIKE = [f for f in FAMILIES if f[0] in ("distilhubert", "whisper", "encodec", "dac")]
NUMERIC = ("dac",)  # weight-norm folds: an unfolded pair is the same model, not the same bytes


@pytest.mark.parametrize("rules, layout, writer", WITHOUT_LIKE, ids=[f"{r}-{lay}" for r, lay, _ in WITHOUT_LIKE])
def test_without_like_the_reverse_section_gives_back_the_original(rules: str, layout: str, writer: Any, cli,
                                                                  tmp_path: Path) -> None:
    """Every tensor the conversion kept comes back bit for bit (equivalent for folds); the changed model's
    weights come back into the original project's code, which matches the changed transformers model."""
    from remap import load_rules
    from remap.verify import verify

    original, config = _original(tmp_path, rules, layout, writer)
    source_config = config[-1] if config else None
    assert cli("apply", rules, original, "-o", tmp_path / "hf", *config).code == 0
    (tmp_path / "b").mkdir()
    same = tmp_path / "b" / original.name  # the output's provenance records the source file's name
    result = cli("revert", rules, tmp_path / "hf", "-o", same, *config)
    assert result.code == 0, result.err
    kept = {k: v for k, v in leaves(original).items() if isinstance(v, tuple) and isinstance(v[0], TensorInfo)}
    back = {k: v for k, v in leaves(same).items() if isinstance(v, tuple) and isinstance(v[0], TensorInfo)}
    if rules not in NUMERIC:
        dropped = set(kept) - set(back)
        # only what a rule drops, and the training state outside the model (s3prl's optimizer)
        assert all("output_layer" in k or k.startswith("Optimizer.") for k in dropped), dropped
        assert {k: back[k] for k in kept if k in back} == {k: kept[k] for k in kept if k in back}
        assert cli("apply", rules, same, "-o", tmp_path / "hf2", *config).code == 0
        assert (tmp_path / "hf2" / "model.safetensors").read_bytes() == (tmp_path / "hf" / "model.safetensors").read_bytes()
    else:
        assert {k: v[0] for k, v in back.items()} == {k: v[0] for k, v in kept.items()}

    perturbed_copy(tmp_path / "hf", tmp_path / "tuned")
    result = cli("revert", rules, tmp_path / "tuned", "-o", tmp_path / f"back{original.suffix}", *config)
    assert result.code == 0, result.err
    report = verify(load_rules(rules), tmp_path / f"back{original.suffix}", tmp_path / "tuned", tolerance=1e-5,
                    source_config=source_config)
    assert report.ok, report.diffs


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


def test_without_like_the_distiller_comes_back_from_the_reverse_section_and_loads_in_s3prl(cli, tmp_path: Path) -> None:
    """Config.distiller from the transformers config; no heads (they were dropped), so none are asked for;
    s3prl's own upstream loader reads the file, and its hidden states match the changed model's."""
    from remap import load_rules
    from remap.verify import verify
    from tests.reference import load_reference

    assert cli("apply", RULES, EXAMPLE, "-o", tmp_path / "hf").code == 0
    perturbed_copy(tmp_path / "hf", tmp_path / "tuned")
    result = cli("revert", RULES, tmp_path / "tuned", "-o", tmp_path / "back.ckpt")
    assert result.code == 0, result.err
    assert "absent (dropped by the conversion; pass --like to keep them): output_layer.**" in result.out
    assert "left behind (initialised by the conversion, not in the original model): masked_spec_embed" in result.out
    model = load_reference(tmp_path / "back.ckpt")  # DistillerModel(Config.distiller), load_state_dict strict
    assert model.output_layer is None
    report = verify(load_rules(RULES), tmp_path / "back.ckpt", tmp_path / "tuned", tolerance=1e-5)
    assert report.ok and set(report.diffs) >= {"layer1", "layer2"}, report.diffs
    like = load_reference(EXAMPLE)
    assert model.conv_layers == like.conv_layers  # s3prl's own reading of extractor_conv_feature_layers
    for name in ("encoder_layers", "encoder_embed_dim", "encoder_ffn_embed_dim", "encoder_attention_heads", "conv_pos",
                 "conv_pos_groups", "extractor_mode", "layer_norm_first", "activation_fn"):
        assert getattr(model.config, name) == getattr(like.config, name), name


def test_the_reverted_distiller_runs_in_s3prls_upstream_expert(cli, tmp_path: Path) -> None:
    from s3prl.upstream.distiller.expert import UpstreamExpert

    assert cli("apply", RULES, EXAMPLE, "-o", tmp_path / "hf").code == 0
    assert cli("revert", RULES, tmp_path / "hf", "-o", tmp_path / "back.ckpt").code == 0
    expert = UpstreamExpert(str(tmp_path / "back.ckpt")).eval()
    with torch.no_grad():
        states = expert([torch.randn(4000, generator=torch.Generator().manual_seed(0))])
    assert len(states["hidden_states"]) >= 3 and states["last_hidden_state"] is not None


@pytest.mark.parametrize("vocab", ["multilingual", "english"])
def test_without_like_whisper_comes_back_as_openai_whisper_loads_it(vocab: str, cli, tmp_path: Path) -> None:
    """{"dims", "model_state_dict"} from the transformers config; whisper.load_model reads it (strictly), and the
    reverted unchanged folder gives back the original's tensors and dims exactly."""
    import whisper

    from remap import load_rules
    from remap.verify import verify

    _whisper(tmp_path / "w.pt", vocab)
    assert cli("apply", "whisper", tmp_path / "w.pt", "-o", tmp_path / "hf").code == 0
    assert cli("revert", "whisper", tmp_path / "hf", "-o", tmp_path / "same.pt").code == 0
    original, same = torch.load(tmp_path / "w.pt"), torch.load(tmp_path / "same.pt", weights_only=True)
    assert same["dims"] == original["dims"] and same.keys() == original.keys()
    assert same["model_state_dict"].keys() == original["model_state_dict"].keys()
    assert all(torch.equal(v, original["model_state_dict"][k]) for k, v in same["model_state_dict"].items())

    perturbed_copy(tmp_path / "hf", tmp_path / "tuned")
    result = cli("revert", "whisper", tmp_path / "tuned", "-o", tmp_path / "back.pt")
    assert result.code == 0, result.err
    assert "absent" not in result.out and "left behind" not in result.out
    model = whisper.load_model(tmp_path / "back.pt", device="cpu")
    assert model.dims.n_vocab == original["dims"]["n_vocab"]
    report = verify(load_rules("whisper"), tmp_path / "back.pt", tmp_path / "tuned", tolerance=1e-5)
    assert report.ok, report.diffs


def test_a_changed_tensor_the_conversion_initialised_cannot_go_back(cli, tmp_path: Path) -> None:
    """Without post_extract_proj the conversion writes an identity projection; a changed one has no home in s3prl."""
    from tests.reference import build_distiller, save_s3prl_checkpoint

    config = {**TINY, "encoder_embed_dim": 24}
    save_s3prl_checkpoint(build_distiller(config), config, tmp_path / "d.ckpt")
    assert cli("apply", RULES, tmp_path / "d.ckpt", "-o", tmp_path / "hf").code == 0
    assert cli("revert", RULES, tmp_path / "hf", "-o", tmp_path / "same.ckpt").code == 0
    assert cli("revert", RULES, tmp_path / "hf", "-o", tmp_path / "like.ckpt", "--like", tmp_path / "d.ckpt").code == 0
    perturbed_copy(tmp_path / "hf", tmp_path / "tuned")
    for like in ([], ["--like", tmp_path / "d.ckpt"]):
        result = cli("revert", RULES, tmp_path / "tuned", "-o", tmp_path / "back.ckpt", *like)
        assert result.code == 1 and result.err.count("\n") == 1, result.err
        assert "'feature_projection.projection.bias' is no longer the zeros fill the conversion wrote" in result.err
        assert "the original model has no such tensor, so this change cannot be carried back" in result.err
        assert not (tmp_path / "back.ckpt").exists()


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


def test_a_folder_of_another_model_class_is_refused_in_one_line(cli, tmp_path: Path) -> None:
    assert cli("apply", RULES, EXAMPLE, "-o", tmp_path / "hf").code == 0
    result = cli("revert", "wav2vec2", tmp_path / "hf", "-o", tmp_path / "back.pt", "--like", EXAMPLE)
    assert (result.code, result.err) == (1, f"error: {tmp_path / 'hf' / 'config.json'}: 'architectures' is "
                                            '["HubertModel"], but this rule file converts to ["Wav2Vec2Model"]; use '
                                            "the rule file of that model\n")
    assert not (tmp_path / "back.pt").exists()


def test_a_tied_weight_save_pretrained_left_out_is_read_from_its_source(tmp_path: Path) -> None:
    """Whisper's proj_out.weight is the decoder's token embedding; save_pretrained writes it once."""
    from remap import load_rules
    from remap.revert.folder import hf_folder
    from tests.codec_fixtures import apply

    _whisper(tmp_path / "w.pt", "english")
    apply("whisper", tmp_path / "w.pt", tmp_path / "hf")
    perturbed_copy(tmp_path / "hf", tmp_path / "tuned")
    tensors = hf_folder(load_rules("whisper"), tmp_path / "tuned")
    assert "proj_out.weight" not in {k for k, _ in read_checkpoint(tmp_path / "tuned").walk()}
    assert tensors["proj_out.weight"] is tensors["model.decoder.embed_tokens.weight"]


def test_a_config_the_reverse_section_cannot_read_is_refused_in_one_line(cli, tmp_path: Path) -> None:
    """quick_gelu is a transformers activation s3prl does not have: no guess, one line, nothing written."""
    assert cli("apply", RULES, EXAMPLE, "-o", tmp_path / "hf").code == 0
    config = json.loads((tmp_path / "hf" / "config.json").read_text())
    (tmp_path / "hf" / "config.json").write_text(json.dumps({**config, "hidden_act": "quick_gelu"}))
    result = cli("revert", RULES, tmp_path / "hf", "-o", tmp_path / "back.ckpt")
    assert result.code == 1 and result.err.count("\n") == 1, result.err
    assert result.err.startswith(f"error: {tmp_path / 'hf' / 'config.json'}: cannot compute the original's "
                                 "'Config.distiller' from this config.json (")
    assert "KeyError: 'quick_gelu'" in result.err
    assert not (tmp_path / "back.ckpt").exists()
