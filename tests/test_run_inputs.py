"""A run's inputs and settings travel with it: a worker that reaches only the store scores the
run with the run's own files, templates and embedding model, or refuses to."""

from __future__ import annotations

import gzip
import hashlib
import json
import shutil
from pathlib import Path

import pytest
from pydantic import ValidationError

from generator import run_inputs
from generator import store as store_package
from generator.embeddings import DEFAULT_MODEL, Embedder, model_fingerprint
from generator.errors import DataFileError, RunSettingsError, StoreError
from generator.filters.stored_run import RunPipelines
from generator.prompts import JUDGE_TEMPLATE, PromptTemplates, TemplateRenderError
from generator.run_inputs import InputCache, embedder_for, pack_run
from generator.schema import (
    CandidateStatus,
    EmbeddingSpec,
    Gap,
    RunConfig,
    RunInput,
    SFTExample,
)
from generator.store import Store
from tests.factories import candidate, sft

DATA = Path(__file__).parent / "data"
SEED_TASKS = DATA / "self-instruct" / "seed_tasks.jsonl"
HUMANEVAL = DATA / "humaneval" / "HumanEval.jsonl.gz"


def test_a_blob_comes_back_byte_for_byte_in_chunks_and_is_stored_once(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(store_package.blobs, "CHUNK_BYTES", 1000)
    data = SEED_TASKS.read_bytes()
    digest = store.put_blob(data)
    assert digest == hashlib.sha256(data).hexdigest()
    key = store.keys.blob(digest)
    assert int(store.redis.hget(key, "chunks") or 0) > 3, "cut into chunks"
    assert store.get_blob(digest, max_bytes=len(data)) == data
    assert store.put_blob(data) == digest and len(store.redis.keys(f"{key}*")) == 1
    assert store.get_blob(store.put_blob(b""), max_bytes=0) == b""


def test_a_missing_or_tampered_blob_is_refused_not_used(store: Store) -> None:
    with pytest.raises(StoreError, match="is not in the store"):
        store.get_blob("0" * 64, max_bytes=10)
    digest = store.put_blob(b"the existing data")
    import zlib

    store._binary().hset(store.keys.blob(digest), "0", zlib.compress(b"other data"))
    with pytest.raises(StoreError, match="damaged: its content has another hash"):
        store.get_blob(digest, max_bytes=100)
    store._binary().hset(store.keys.blob(digest), "0", b"not zlib")
    with pytest.raises(StoreError, match="damaged"):
        store.get_blob(digest, max_bytes=100)
    for count in (b"x", b"1000000000000"):
        store._binary().hset(store.keys.blob(digest), "chunks", count)
        with pytest.raises(StoreError, match="chunk count does not match"):
            store.get_blob(digest, max_bytes=100)


def test_a_blob_that_inflates_past_its_stated_size_is_refused_before_it_fills_memory(
    store: Store,
) -> None:
    bomb = bytes(50 * 2**20)  # 50 MiB of zeros: some 50 KiB compressed
    digest = store.put_blob(bomb)
    assert int(store.redis.memory_usage(store.keys.blob(digest)) or 0) < 2**20
    with pytest.raises(StoreError, match="larger than the 1000 bytes expected"):
        store.get_blob(digest, max_bytes=1000)


def test_an_input_over_the_size_limit_is_one_clear_error_and_stores_nothing(
    store: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(run_inputs, "MAX_INPUT_BYTES", 1000)
    big = tmp_path / "big.jsonl"
    big.write_bytes(b"x" * 2000)
    with pytest.raises(DataFileError, match=r"big\.jsonl: 0 MiB; a run's inputs travel in the"):
        run_inputs.upload(store, "existing", big)
    assert not store.redis.keys(f"{store.keys.prefix}:blob:*")


@pytest.mark.parametrize(
    "name", ["nested/seed.jsonl", "/abs/seed.jsonl", "..", "a\\b", "x\x00y", ""]
)
def test_an_input_named_like_a_path_is_refused(name: str) -> None:
    with pytest.raises(ValidationError):
        RunInput(role="existing", name=name, source="s", sha256="0" * 64, bytes=0)


def _packed(store: Store, tmp_path: Path) -> RunConfig:
    """A run created on a 'CLI host' whose files are then deleted."""
    host = tmp_path / "cli-host"
    host.mkdir()
    existing = shutil.copy(SEED_TASKS, host / "seed_tasks.jsonl")
    eval_set = shutil.copy(HUMANEVAL, host / "HumanEval.jsonl.gz")
    config = RunConfig(run_id="run-1", existing=[str(existing)], eval_sets=[str(eval_set)])
    packed = pack_run(store, config, Embedder())
    store.save_run(packed)
    store.save_gaps("run-1", [Gap(id="g", run_id="run-1", label="g", target=10)], "{}")
    shutil.rmtree(host)
    return packed


def test_a_packed_run_records_its_files_templates_and_embedding_model(
    store: Store, tmp_path: Path
) -> None:
    packed = _packed(store, tmp_path)
    roles = {i.name: i.role for i in packed.inputs}
    assert roles["seed_tasks.jsonl"] == "existing" and roles["HumanEval.jsonl.gz"] == "eval_set"
    assert roles[JUDGE_TEMPLATE] == "template" and roles["defaults.yaml"] == "template"
    seed = next(i for i in packed.inputs if i.name == "seed_tasks.jsonl")
    assert seed.sha256 == hashlib.sha256(SEED_TASKS.read_bytes()).hexdigest()
    assert seed.bytes == SEED_TASKS.stat().st_size
    assert packed.embedding == EmbeddingSpec(
        model=DEFAULT_MODEL,
        max_tokens=None,
        fingerprint=model_fingerprint(DEFAULT_MODEL),
        tier="cascade",  # the default: a worker searches the run's large sets the same way
    )
    assert store.get_run("run-1") == packed


def test_a_worker_fetches_each_input_once_and_reads_it_from_its_cache_after(
    store: Store, tmp_path: Path
) -> None:
    packed = _packed(store, tmp_path)
    cache = InputCache(tmp_path / "worker" / "inputs")
    [existing] = cache.files(store, packed, "existing")
    assert existing.read_bytes() == SEED_TASKS.read_bytes()
    assert existing.name == "seed_tasks.jsonl", "the reader tells formats by name"
    digest = existing.parent.name
    store.redis.delete(store.keys.blob(digest))
    assert cache.files(store, packed, "existing") == [existing], "read from the cache"
    existing.write_text("tampered")
    with pytest.raises(RunSettingsError, match=r"seed_tasks\.jsonl .*is not in the store"):
        cache.files(store, packed, "existing")


def test_the_run_templates_are_the_ones_a_worker_renders_not_its_own(
    store: Store, tmp_path: Path
) -> None:
    directory = tmp_path / "prompts"
    shutil.copytree(PromptTemplates().directory, directory)
    (directory / JUDGE_TEMPLATE).write_text("RUN'S OWN JUDGE {{ rubric }}")
    config = pack_run(store, RunConfig(run_id="r"), Embedder(), PromptTemplates(directory))
    shutil.rmtree(directory)
    templates = InputCache(tmp_path / "inputs").templates(store, config)
    assert templates is not None
    assert templates.render(JUDGE_TEMPLATE, rubric="R") == "RUN'S OWN JUDGE R"
    assert InputCache(tmp_path / "x").templates(store, RunConfig(run_id="old")) is None


def test_a_template_planted_in_the_store_cannot_run_code_on_a_worker(
    store: Store, tmp_path: Path
) -> None:
    directory = tmp_path / "prompts"
    shutil.copytree(PromptTemplates().directory, directory)
    marker = tmp_path / "pwned"
    (directory / JUDGE_TEMPLATE).write_text(
        "{{ cycler.__init__.__globals__.os.system('touch " + str(marker) + "') }}"
    )
    config = pack_run(store, RunConfig(run_id="r"), Embedder(), PromptTemplates(directory))
    templates = InputCache(tmp_path / "inputs").templates(store, config)
    assert templates is not None
    with pytest.raises(TemplateRenderError, match="refused"):
        templates.render(JUDGE_TEMPLATE, rubric="R")
    assert not marker.exists()


def test_a_worker_without_the_runs_embedding_model_refuses_with_a_reason(
    tmp_path: Path,
) -> None:
    spec = EmbeddingSpec(model=DEFAULT_MODEL, fingerprint=model_fingerprint(DEFAULT_MODEL))
    found = embedder_for(spec, [], tmp_path)
    assert found.model_name == DEFAULT_MODEL
    elsewhere = EmbeddingSpec(model="/models/on/the/cli/host", fingerprint=spec.fingerprint)
    copy = embedder_for(elsewhere, [], tmp_path)
    assert copy.model_name == DEFAULT_MODEL, "the same files under another name are the model"
    other = EmbeddingSpec(model=DEFAULT_MODEL, fingerprint="f" * 64, max_tokens=128)
    with pytest.raises(RunSettingsError) as refused:
        embedder_for(other, [], tmp_path)
    message = str(refused.value)
    assert "created with embedding model 'all-MiniLM-L6-v2' (fingerprint ffffffffffff)" in message
    assert "another model" in message and "start the worker with embedding_model" in message


def test_a_model_path_the_run_names_is_never_opened_on_the_worker(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    opened: list[str] = []
    real = run_inputs.model_fingerprint
    monkeypatch.setattr(run_inputs, "model_fingerprint", lambda n: opened.append(n) or real(n))
    probe = EmbeddingSpec(model=str(tmp_path), fingerprint="e" * 64)
    with pytest.raises(RunSettingsError, match="cannot provide it"):
        embedder_for(probe, [], tmp_path)
    assert opened == [DEFAULT_MODEL], "only the worker's own models are hashed"


def test_the_max_tokens_a_run_was_created_with_reach_the_worker(tmp_path: Path) -> None:
    spec = EmbeddingSpec(
        model=DEFAULT_MODEL, max_tokens=64, fingerprint=model_fingerprint(DEFAULT_MODEL)
    )
    assert embedder_for(spec, [], tmp_path).max_tokens == 64


def test_a_run_whose_cli_host_files_are_gone_is_scored_against_them(
    store: Store, embedder: Embedder, tmp_path: Path
) -> None:
    packed = _packed(store, tmp_path)
    assert not Path(packed.existing[0]).exists()
    seed = json.loads(SEED_TASKS.read_text().splitlines()[3])
    instance = seed["instances"][0]
    prompt = f"{seed['instruction']}\n{instance['input']}".strip()
    with gzip.open(HUMANEVAL, "rt") as lines:
        humaneval = json.loads(lines.readline())["prompt"]

    def generated(index: int, example: SFTExample) -> str:
        item = candidate(index, gap="g", status=CandidateStatus.GENERATED)
        item = item.model_copy(update={"payload": example})
        item = item.model_copy(update={"id": item.compute_id()})
        store.put(item)
        return item.id

    ids = [
        generated(1, sft(prompt, instance["output"])),
        generated(2, sft(f"Please solve this:\n{humaneval}", "def f(): pass")),
        generated(3, sft("Name three rivers in Peru.", "The Amazon, the Ucayali and the Marañón.")),
    ]
    pipelines = RunPipelines(embedder, tmp_path / "worker" / "indexes")
    pipelines.for_run(store, "run-1", ids).score_and_route(store, ids)
    after = {c.id: c for c in store.get_many(ids)}
    assert after[ids[0]].scores["exact_duplicate"].evidence["match"] == "seed_tasks.jsonl:4"
    assert after[ids[1]].scores["contamination"].evidence["eval_item"] == "HumanEval/0"
    assert after[ids[2]].status is CandidateStatus.PENDING
    assert (tmp_path / "worker" / "inputs").is_dir(), "fetched into the worker's data dir"


def test_a_stored_run_with_another_embedding_model_is_not_scored(
    store: Store, embedder: Embedder, tmp_path: Path
) -> None:
    spec = EmbeddingSpec(model="/elsewhere/model", fingerprint="a" * 64)
    store.save_run(RunConfig(run_id="run-1", embedding=spec))
    item = candidate(1, status=CandidateStatus.GENERATED)
    store.put(item)
    pipelines = RunPipelines(embedder, tmp_path / "indexes")
    with pytest.raises(RunSettingsError, match="cannot provide it"):
        pipelines.for_run(store, "run-1", [item.id])
    assert store.get(item.id).status is CandidateStatus.GENERATED, "nothing scored"
