"""Rule files by name: the bundled ones, rule packs registered through entry points, and ambiguity."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from remap import catalog
from remap.errors import RemapError

ROOT = Path(__file__).resolve().parent.parent
PACK_RULE = "test-hubert-ctc-encoder"


def test_every_bundled_rule_file_is_listed_by_its_name() -> None:
    bundled = {f.name: f for f in catalog.available() if f.pack == "remap"}
    shipped = sorted(p.stem for p in (ROOT / "rules").glob("*.yaml"))
    assert sorted(bundled) == shipped  # every file's `name:` is its stem
    assert bundled["distilhubert"].target == "HubertModel"
    assert bundled["wav2vec2-ctc"].description.startswith("fairseq wav2vec 2.0 fine-tuned with CTC")


def test_a_bundled_name_resolves_to_the_shipped_file() -> None:
    assert catalog.find("distilhubert").read_bytes() == (ROOT / "rules" / "distilhubert.yaml").read_bytes()
    assert catalog.load("remap:wavlm").name == "wavlm"


def test_a_rule_pack_registered_through_its_entry_point_is_found() -> None:
    packs = {f.name: f for f in catalog.available() if f.pack == "testpack"}
    assert PACK_RULE in packs, "tests/rulepack is not installed; run scripts/setup.sh"
    found = packs[PACK_RULE]
    assert "site-packages" in str(found.path)  # installed as a wheel, not read from tests/
    assert found.target == "HubertModel" and not found.error
    assert catalog.find(f"testpack:{PACK_RULE}") == found.path


def test_apply_by_a_packs_rule_name_gives_the_encoder(cli, tmp_path: Path) -> None:
    """The pack's rule file, named on the command line, converts a tiny HubertForCTC's encoder exactly."""
    from safetensors.torch import save_file
    from transformers import HubertConfig, HubertForCTC, HubertModel

    config = HubertConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=4, intermediate_size=64,
                          conv_dim=[8, 8], conv_kernel=[10, 3], conv_stride=[5, 2], num_conv_pos_embeddings=16,
                          num_conv_pos_embedding_groups=4, vocab_size=12)
    torch.manual_seed(0)
    ctc = HubertForCTC(config).eval()
    source = tmp_path / "ctc.safetensors"
    save_file({k: v.contiguous() for k, v in ctc.state_dict().items()}, source)
    result = cli("apply", PACK_RULE, source, "-o", tmp_path / "out")
    assert result.code == 0, result.err
    model, info = HubertModel.from_pretrained(tmp_path / "out", output_loading_info=True)
    assert {k: v for k, v in info.items() if v} == {}
    wave = torch.randn(1, 4000, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        assert torch.equal(model.eval()(wave).last_hidden_state, ctc.hubert(wave).last_hidden_state)


def _two_packs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    text = (ROOT / "rules" / "distilhubert.yaml").read_text()
    for pack in ("alpha", "beta"):
        (tmp_path / pack).mkdir()
        (tmp_path / pack / "same.yaml").write_text(text)
    monkeypatch.setattr(catalog, "_packs", lambda: [("alpha", tmp_path / "alpha"), ("beta", tmp_path / "beta")])


def test_a_name_two_packs_ship_is_refused_and_can_be_qualified(tmp_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    _two_packs(tmp_path, monkeypatch)
    with pytest.raises(RemapError, match=r"rule file name 'distilhubert' is shipped by several packs: "
                                         r"alpha:distilhubert \(.*\), beta:distilhubert \(.*\); name one as PACK:NAME"):
        catalog.find("distilhubert")
    assert catalog.find("beta:distilhubert") == tmp_path / "beta" / "same.yaml"


def test_an_unknown_name_lists_the_known_ones(cli) -> None:
    result = cli("plan", "distilhubret", ROOT / "examples" / "distilhubert-tiny.ckpt")
    assert result.code == 1
    assert result.err.startswith("error: no rule file named 'distilhubret' (known: ")
    assert "distilhubert, " in result.err and "wav2vec2-ctc, " in result.err
    assert result.err.endswith("; pass a path to a .yaml file, or see 'remap list'\n")


def test_a_path_is_never_taken_for_a_name(cli, tmp_path: Path) -> None:
    result = cli("test", tmp_path / "distilhubert.yaml")
    assert result.code == 1
    assert "cannot read rule file" in result.err


def test_a_folder_named_like_a_rule_file_does_not_shadow_it(cli, tmp_path: Path,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """`remap apply distilhubert ckpt -o distilhubert` twice: the output folder is not a rule file."""
    (tmp_path / "distilhubert").mkdir()
    monkeypatch.chdir(tmp_path)
    assert catalog.find("distilhubert") == catalog.find("remap:distilhubert")


def test_list_shows_name_pack_target_and_description(cli) -> None:
    result = cli("list")
    assert result.code == 0
    lines = result.out.splitlines()
    assert lines[0].split() == ["name", "pack", "target", "description"]
    row = next(line for line in lines if line.startswith("distilhubert "))
    assert row.split()[:3] == ["distilhubert", "remap", "HubertModel"]
    assert any(line.startswith(f"{PACK_RULE} ") and " testpack " in line for line in lines)


def test_a_pack_rule_file_that_does_not_compile_is_listed_with_its_error(tmp_path: Path,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "broken.yaml").write_text("remap: 1\nname: x\n")
    monkeypatch.setattr(catalog, "_packs", lambda: [("broken", tmp_path)])
    (entry,) = catalog.available()
    assert (entry.name, entry.pack) == ("broken", "broken")
    assert entry.error.endswith("missing required field 'source'")
