import pytest

from mcqa.models import REGISTRY, ModelNotFound, ModelSpec, _package_dir, resolve


def test_packaged_models_resolve_to_files():
    gguf = resolve("smollm2-135m")
    assert gguf.suffix == ".gguf" and gguf.stat().st_size > 50_000_000
    embedder = resolve("minilm-l6", kind="embedder")
    assert (embedder / "config.json").is_file()


def test_local_path_is_accepted(tmp_path):
    path = tmp_path / "my.gguf"
    path.write_bytes(b"GGUF")
    assert resolve(str(path)) == path


def test_unknown_name_lists_the_known_ones():
    with pytest.raises(ModelNotFound, match="qwen2.5-coder-1.5b, smollm2-135m"):
        resolve("gpt-17")
    with pytest.raises(ModelNotFound, match="is an embedder"):
        resolve("minilm-l6", kind="llm")


def test_missing_package_says_how_to_install():
    spec = ModelSpec("ghost", "llm", "not installed", "pip install ghost-model")
    with pytest.raises(ModelNotFound, match="pip install ghost-model"):
        _package_dir("ghost_model_that_is_not_installed", spec)


@pytest.mark.slow
def test_default_model_assembles_and_verifies():
    path = resolve("qwen2.5-coder-1.5b")
    assert path.stat().st_size == REGISTRY["qwen2.5-coder-1.5b"].size
    assert path.with_name(path.name + ".sha256").read_text().strip() == REGISTRY["qwen2.5-coder-1.5b"].sha256
