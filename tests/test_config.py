"""The params schema, overrides and the messages for bad config."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from conftest import REPO

from lsh import config, params_file

PRESETS = [REPO / "params.yaml", *sorted((REPO / "workflow" / "presets").glob("*.yaml"))]


@pytest.fixture
def params() -> dict:
    return params_file.read_yaml(REPO / "params.yaml")


def _problems(params: dict) -> str:
    with pytest.raises(params_file.ConfigError) as info:
        config.validate(params)
    return str(info.value)


def test_presets_are_complete_valid_params_files():
    names = {p.name for p in PRESETS}
    assert {"params.yaml", "smoke.yaml", "paper-lstm.yaml", "paper-rhn.yaml"} <= names
    for path in PRESETS:
        config.load_params(path)


def test_the_package_reads_the_workflow_schema_not_a_copy():
    assert config.SCHEMA_PATH.resolve() == (REPO / "workflow" / "schemas" / "params.schema.yaml").resolve()


def test_every_schema_key_has_a_type_and_a_description():
    def walk(node: dict, path: str) -> None:
        for key, sub in node.get("properties", {}).items():
            where = f"{path}{key}"
            assert "description" in sub, f"{where} has no description"
            assert "type" in sub or "enum" in sub, f"{where} has no type"
            if sub.get("type") == "object":
                assert sub.get("additionalProperties") is False, f"{where} accepts unknown keys"
                walk(sub, f"{where}.")

    schema = config.load_schema()
    assert schema["additionalProperties"] is False
    walk(schema, "")


def test_below_minimum_names_key_value_and_minimum(params):
    params["seed"] = -1
    assert "seed: -1 is less than the minimum of 0" in _problems(params)


def test_unknown_top_level_key_is_an_error_listing_allowed_keys(params):
    params["sead"] = 3
    message = _problems(params)
    assert "sead: unknown key" in message
    allowed = ", ".join(sorted(config.load_schema()["properties"]))
    assert f"allowed keys here: {allowed}" in message and "data, " in allowed


def test_unknown_nested_key_is_named_with_its_path(params):
    params["data"]["train_token"] = 5000
    message = _problems(params)
    assert "data.train_token: unknown key" in message
    assert "train_tokens" in message


def test_wrong_type_names_key_value_and_type(params):
    params["data"]["verify"] = "yes"
    assert "data.verify: 'yes' is not of type boolean" in _problems(params)


def test_nullable_key_says_both_allowed_types(params):
    params["data"]["train_tokens"] = 0.5
    assert "data.train_tokens: 0.5 is not of type integer or null" in _problems(params)


def test_missing_required_key_is_named(params):
    del params["data"]["prepared"]
    message = _problems(params)
    assert "data.prepared: missing; this key is required" in message


def test_pattern_mismatch_names_key_and_value(params):
    params["data"]["url"] = "ftp.example/ptb"
    message = _problems(params)
    assert "data.url:" in message and "ftp.example/ptb" in message and "does not match" in message


def test_all_problems_are_reported_at_once(params):
    params["seed"] = -1
    params["data"]["verify"] = 1
    params["extra"] = {}
    message = _problems(params)
    assert message.count("\n  ") == 3


def test_set_overrides_parse_yaml_types(params, tmp_path):
    path = tmp_path / "p.yaml"
    path.write_text(yaml.safe_dump(params))
    loaded = config.load_params(path, ["data.train_tokens=null", "data.verify=false", "seed=7", "train.lr=1e3"])
    assert loaded["train"]["lr"] == 1000.0, "1e3 is a number on the command line, not YAML 1.1's string"
    assert loaded["data"]["train_tokens"] is None
    assert loaded["data"]["verify"] is False
    assert loaded["seed"] == 7


def test_set_a_whole_section_as_json(params):
    section = dict(params["data"], train_tokens=5000)
    import json

    out = params_file.apply_overrides(params, [f"data={json.dumps(section)}"])
    assert out["data"] == section
    assert params["data"]["train_tokens"] != 5000, "overrides must not change their input"


def test_set_an_unknown_key_is_refused_by_validation(params, tmp_path):
    path = tmp_path / "p.yaml"
    path.write_text(yaml.safe_dump(params))
    with pytest.raises(params_file.ConfigError, match=r"data\.trian_tokens: unknown key"):
        config.load_params(path, ["data.trian_tokens=3"])


@pytest.mark.parametrize("text", ["seed", "=3", "data..raw=x", ".seed=1"])
def test_malformed_set_says_the_expected_form(text):
    with pytest.raises(params_file.ConfigError, match="expected KEY.PATH=VALUE"):
        params_file.parse_override(text)


def test_set_below_a_scalar_key_is_refused(params):
    with pytest.raises(params_file.ConfigError, match=f"seed is {params['seed']}, not a section"):
        params_file.apply_overrides(params, ["seed.x=1"])


def test_params_file_that_is_not_yaml_names_the_file(tmp_path: Path):
    path = tmp_path / "broken.yaml"
    path.write_text("seed: [1, 2\n")
    with pytest.raises(params_file.ConfigError, match=f"params file {path} is not valid YAML"):
        config.load_params(path)


def test_missing_params_file_is_named(tmp_path: Path):
    with pytest.raises(params_file.ConfigError, match="does not exist"):
        config.load_params(tmp_path / "nope.yaml")


def test_params_file_must_be_a_mapping(tmp_path: Path):
    path = tmp_path / "list.yaml"
    path.write_text("- 1\n- 2\n")
    with pytest.raises(params_file.ConfigError, match="must hold a mapping"):
        config.load_params(path)


def test_cross_field_rules_name_both_keys(params):
    params["model"]["tied"] = True
    params["model"]["emb"], params["model"]["hidden"] = 100, 120
    assert "model.tied: true needs model.emb == model.hidden (got 100 and 120)" in _problems(params)


def test_death_rate_range_must_be_ordered(params):
    params["space"]["death_rate"].update(low=0.9, high=0.4)
    assert "space.death_rate: low 0.9 is above high 0.4" in _problems(params)


def test_enum_names_the_allowed_choices(params):
    params["search"]["proposer"] = "bayes"
    assert "search.proposer: 'bayes' is not allowed; choose one of: tpe, atpe, rand, grid" in _problems(params)


# -----------------------------------------------------------------------------
# Numbers as the schema means them (issue: whole numbers written as floats)


def test_whole_floats_become_integers_from_files_and_set(params, tmp_path: Path):
    params["search"]["n"] = 6.0
    params["search"]["e0"] = 1.0
    path = tmp_path / "p.yaml"
    path.write_text(yaml.safe_dump(params))
    loaded = config.load_params(path, ["data.train_tokens=2e4", "final.epochs=12.0"])
    assert loaded["search"]["n"] == 6 and type(loaded["search"]["n"]) is int
    assert loaded["search"]["e0"] == 1 and type(loaded["search"]["e0"]) is int
    assert loaded["data"]["train_tokens"] == 20000 and type(loaded["data"]["train_tokens"]) is int
    assert type(loaded["final"]["epochs"]) is int


def test_a_fractional_value_for_an_integer_key_is_refused_by_name(params):
    params["search"]["n"] = 6.5
    assert "search.n: 6.5 is not of type integer" in _problems(params)


def test_a_number_yaml_reads_as_text_says_how_to_write_it(tmp_path: Path):
    text = ((REPO / "params.yaml").read_text().replace("lr: 20 ", "lr: 1.0e30 ")
            .replace("weight_decay: 1.2e-6", "weight_decay: 1e-06"))
    path = tmp_path / "p.yaml"
    path.write_text(text)
    with pytest.raises(params_file.ConfigError) as info:
        config.load_params(path)
    message = str(info.value)
    assert "train.lr: '1.0e30' is read as text by YAML; write the number as 1.0e+30" in message
    assert "train.weight_decay: '1e-06' is read as text by YAML; write the number as 1.0e-06" in message
    assert "is not of type number" not in message, "one line per key"


def test_an_integer_too_large_for_a_float_is_named(params):
    params["train"]["lr"] = 10**400
    assert "train.lr: 1000" in _problems(params) and "too large for a floating-point number" in _problems(params)


def test_the_resolved_file_reads_back_to_the_same_numbers(params, tmp_path: Path):
    params["train"].update(weight_decay=1e-6, lr=1e-5, clip=1e16)
    path = config.write_resolved(params, tmp_path / "resolved.yaml")
    assert config.load_params(path) == params
    stamp = path.stat().st_mtime_ns
    config.write_resolved(params, path)
    assert path.stat().st_mtime_ns == stamp, "an unchanged file is not rewritten"


def test_a_params_file_that_is_not_utf8_is_named(tmp_path: Path):
    path = tmp_path / "latin1.yaml"
    path.write_bytes("seed: 1 # café\n".encode("latin-1"))
    with pytest.raises(params_file.ConfigError, match=f"params file {path} is not UTF-8 text"):
        params_file.read_yaml(path)


def test_params_validation_refuses_an_impossible_schedule_like_plan_does(params):
    params["search"].update(insert=0.6, eliminate=0.5)
    assert "search.insert: 0.6 must be less than search.eliminate" in _problems(params)


def test_every_schema_choice_has_its_function_and_no_more():
    """Choices are defined once, by the schema; each is a name -> function table in the library."""
    from lsh import lyapunov, sparse
    from lsh.search.proposers import PROPOSERS
    from lsh.search.ranking import DISTANCES, EMBEDDINGS, PCA_FITS

    props = config.load_schema()["properties"]

    def enum(section: str, key: str) -> set:
        node = props[section]["properties"][key]
        return set(map(str, node.get("enum") or node["items"]["enum"]))

    assert enum("sparse", "init") == set(sparse.INIT) == enum("space", "init")
    assert enum("sparse", "death") == set(sparse.DEATH) == enum("space", "death")
    assert enum("sparse", "growth") == set(sparse.GROWTH) == enum("space", "growth")
    assert enum("sparse", "redistribution") == set(sparse.REDISTRIBUTION) == enum("space", "redistribution")
    assert enum("search", "proposer") == set(PROPOSERS)
    assert enum("search", "embedding") == set(EMBEDDINGS)
    assert enum("search", "distance") == set(DISTANCES)
    assert enum("search", "pca_fit") == set(PCA_FITS)
    assert enum("lyapunov", "method") == set(lyapunov.METHODS)
    assert enum("lyapunov", "state") == set(lyapunov.STATES)
    assert enum("lyapunov", "layout") == set(lyapunov.LAYOUTS)
    assert enum("lyapunov", "dtype") == set(lyapunov.DTYPES)
    from lsh.search.ranking import AGES, RANKERS
    from lsh.study import cells, table

    assert enum("search", "ranker") == set(RANKERS)
    assert enum("search", "age") == set(AGES)
    assert enum("study", "space") == set(cells.SPACES)
    assert set(table.LAYOUTS) == set(lyapunov.LAYOUTS), "the study reads spectra in the layouts lyapunov makes"


def test_params_become_frozen_sections_with_the_decay_resolved(params):
    params["sparse"]["decay_epochs"] = None
    typed = config.Params.from_dict(config.validate(params))
    assert typed.sparse.decay_epochs == params["final"]["epochs"]
    assert typed.model.dropout_input == params["model"]["dropout"]["input"]
    assert typed.space.death_rate.q == params["space"]["death_rate"]["q"]
    with pytest.raises(AttributeError):
        typed.train.lr = 1.0  # frozen: a stage cannot change what the library is handed


def test_nested_text_from_snakemakes_config_is_read_as_the_numbers_the_schema_wants(params):
    params["lyapunov"].update(steps="30", qr_every="2.0")
    params["train"]["lr"] = "1e-3"
    out = config.validate(params, text_numbers=True)
    assert out["lyapunov"]["steps"] == 30 and isinstance(out["lyapunov"]["steps"], int)
    assert out["lyapunov"]["qr_every"] == 2 and out["train"]["lr"] == 1e-3


def test_nested_text_that_is_no_number_is_still_refused_by_name(params):
    params["lyapunov"]["steps"] = "thirty"
    with pytest.raises(params_file.ConfigError, match="lyapunov.steps"):
        config.validate(params, text_numbers=True)


def test_text_numbers_are_only_for_snakemakes_config_a_params_file_says_how_to_write_them(params):
    params["lyapunov"]["steps"] = "30"
    with pytest.raises(params_file.ConfigError, match="lyapunov.steps"):
        config.validate(params)
