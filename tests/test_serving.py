"""End to end through a real tritonserver: both ensembles, HTTP and gRPC, against the in-process reference."""

from __future__ import annotations

import pytest

from texts import AWKWARD_TEXTS, expected_entities, long_text_with_boundary_entities
from triton_calls import infer

pytestmark = pytest.mark.server

PROTOCOLS = ["http", "grpc"]
ENSEMBLES = ["ner", "ner_fp32"]


def triples(entities: list[dict]) -> list[tuple[str, int, int]]:
    return [(e["type"], e["start"], e["end"]) for e in entities]


def assert_well_formed(text: str, entities: list[dict]) -> None:
    for e in entities:
        assert set(e) == {"type", "start", "end", "span", "score"}
        assert e["span"] == text[e["start"] : e["end"]]
        assert 0.0 <= e["score"] <= 1.0


@pytest.mark.parametrize("protocol", PROTOCOLS)
@pytest.mark.parametrize("model", ENSEMBLES)
def test_awkward_texts_match_reference_and_known_entities(served, protocol, model):
    texts = AWKWARD_TEXTS + ["", "   \t\n "]
    got = infer(served, protocol, texts, model)
    want = served.reference(texts)
    for text, entities, reference in zip(texts, got, want):
        assert_well_formed(text, entities)
        assert triples(entities) == triples(reference), text
        assert triples(entities) == expected_entities(text), text
    if model == "ner_fp32":  # the reference runs the same FP32 weights: scores agree too
        for entities, reference in zip(got, want):
            assert [e["score"] for e in entities] == pytest.approx([e["score"] for e in reference], abs=2e-4)
    assert got[-2:] == [[], []]


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_long_text_over_three_windows_loses_and_duplicates_nothing(served, protocol):
    text = long_text_with_boundary_entities(n_chars=2000)
    expected = expected_entities(text)
    assert len(expected) > 50
    for model in ENSEMBLES:
        (entities,) = infer(served, protocol, [text], model)
        assert_well_formed(text, entities)
        assert triples(entities) == expected


def test_windows_actually_cut_the_long_text(served):
    from ner_pipeline import encode_texts

    text = long_text_with_boundary_entities(n_chars=2000)
    batch = encode_texts(served.reference.tokenizer, [text], served.reference.window)
    assert batch.rows >= 4


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_bioes_argmax_model_matches_reference(served_bioes, protocol):
    texts = AWKWARD_TEXTS + [""]
    got = infer(served_bioes, protocol, texts)
    want = served_bioes.reference(texts)
    for text, entities, reference in zip(texts, got, want):
        assert_well_formed(text, entities)
        assert triples(entities) == triples(reference) == expected_entities(text), text
    # Over long texts the tiny argmax model is not perfect; the served FP32 answer must still equal the reference,
    # which runs the same FP32 weights.
    long_text = long_text_with_boundary_entities(n_chars=1200)
    (entities,) = infer(served_bioes, protocol, [long_text], model="ner_fp32")
    (reference,) = served_bioes.reference([long_text])
    assert_well_formed(long_text, entities)
    assert triples(entities) == triples(reference)
    assert [e["score"] for e in entities] == pytest.approx([e["score"] for e in reference], abs=2e-4)


def test_batch_keeps_order_and_mixes_lengths(served):
    texts = [AWKWARD_TEXTS[i % len(AWKWARD_TEXTS)] * (1 + i % 3) for i in range(40)]
    got = infer(served, "grpc", texts)
    assert [triples(e) for e in got] == [expected_entities(t) for t in texts]


def test_repository_under_a_non_ascii_path_serves(served, tmp_path):
    """The Python-backend stubs cannot open non-ASCII paths; the server reaches such a repository through an ASCII
    symlink (serving.server.ascii_repository_path)."""
    import shutil

    from serving.server import ServerConfig, TritonServer, ascii_repository_path, free_port

    repository = tmp_path / "模型仓库" / "model_repository"
    shutil.copytree(served.repository, repository, ignore=shutil.ignore_patterns("ner_fp32", "encoder_fp32"))
    link = ascii_repository_path(repository)
    assert str(link).isascii() and link.resolve() == repository.resolve()
    server = TritonServer(ServerConfig(model_repository=repository, http_port=free_port(), grpc_port=free_port(),
                                       metrics_port=free_port(), log_file=tmp_path / "tritonserver.log"))
    with server:
        text = "张三在北京的清华大学读书。"
        (entities,) = infer(type(served)(served.checkpoint, repository, served.report, server, served.reference),
                            "grpc", [text])
        assert triples(entities) == expected_entities(text)
