"""llama-server's /rerank (and /reranking, /v1/rerank, /v1/reranking) over a real server on a tiny
random BERT cross-encoder written as llama.cpp's converter writes a reranker (pooling type rank,
cls and cls.output heads): Jina's and Cohere's shape and TEI's, best first, top_n, the documents'
texts on request, usage, errors in llama-server's shape; the default SmolLM2 refused with a 400
(it is no reranker) unless served with --reranking; the reranker's /completion and /embeddings
refused; and Engine.rerank, the same implementation.
The weights are noise: the tests check shape, order, determinism and framing, not relevance."""
from __future__ import annotations

import httpx
import pytest

from llamaserve import Engine, InvalidRequest
from llamaserve.config import ServerConfig
from llamaserve.server.app import create_app
from serverutil import LiveServer
from tiny_models import write_tiny_reranker

QUERY = "Machine learning is"
DOCUMENTS = ["A machine is a physical system that uses power to apply forces.",
             "Learning is the process of acquiring new understanding.",
             "Machine learning is a field of study in artificial intelligence.",
             "Paris, capitale de la France, est une grande ville europeenne."]
PATHS = ("/rerank", "/reranking", "/v1/rerank", "/v1/reranking")
N_CTX_TRAIN = 128  # the tiny BERT's position table: no pair may be longer


@pytest.fixture(scope="module")
def reranker_path(tmp_path_factory):
    return write_tiny_reranker(tmp_path_factory.mktemp("rerank") / "tiny-reranker.gguf", n_ctx_train=N_CTX_TRAIN)


@pytest.fixture(scope="module")
def reranker(reranker_path):
    with Engine.load(reranker_path, n_ctx=512, n_parallel=1) as engine:
        yield engine


@pytest.fixture(scope="module")
def url(reranker_path):
    config = ServerConfig(model=str(reranker_path), n_parallel=1, n_ctx=512)
    with LiveServer(create_app(config)) as server:
        yield server.url


def post(url: str, path: str, body: dict) -> httpx.Response:
    return httpx.post(url + path, json=body, timeout=120)


def pair_length(engine: Engine, document: str) -> int:
    """BERT's framing of a pair: [CLS] query [SEP] document."""
    return 2 + len(engine.tokenize(QUERY, add_special=False)) + len(engine.tokenize(document, add_special=False))


@pytest.mark.parametrize("path", PATHS)
def test_documents_ranked_best_first_in_jinas_shape(url, reranker, path):
    r = post(url, path, {"query": QUERY, "documents": DOCUMENTS})
    assert r.status_code == 200, r.text
    out = r.json()
    assert out["object"] == "list" and out["model"] == "tiny-reranker"
    results = out["results"]
    assert sorted(item["index"] for item in results) == [0, 1, 2, 3]
    assert all(set(item) == {"index", "relevance_score"} for item in results)
    scores = [item["relevance_score"] for item in results]
    assert scores == sorted(scores, reverse=True) and len(set(scores)) == len(scores)  # each document its own score
    tokens = sum(pair_length(reranker, d) for d in DOCUMENTS)
    assert out["usage"] == {"prompt_tokens": tokens, "total_tokens": tokens}
    assert post(url, path, {"query": QUERY, "documents": DOCUMENTS}).json()["results"] == results  # deterministic


def test_scores_are_the_engines_and_follow_the_query(url, reranker):
    served = post(url, "/rerank", {"query": QUERY, "documents": DOCUMENTS}).json()["results"]
    local = reranker.rerank(QUERY, DOCUMENTS)
    assert [(r.index, pytest.approx(r.score, abs=1e-5)) for r in local.results] == [
        (item["index"], item["relevance_score"]) for item in served]
    other = reranker.rerank("Which city is the capital of France?", DOCUMENTS)
    assert [r.score for r in other.results] != [r.score for r in local.results]


def test_top_n_and_the_documents_texts(url):
    everything = post(url, "/rerank", {"query": QUERY, "documents": DOCUMENTS}).json()["results"]
    for top_n, expected in ((1, 1), (2, 2), (4, 4), (99, 4)):
        out = post(url, "/rerank", {"query": QUERY, "documents": DOCUMENTS, "top_n": top_n}).json()
        assert out["results"] == everything[:expected]
    out = post(url, "/v1/rerank", {"query": QUERY, "documents": DOCUMENTS, "top_n": 2, "return_documents": True})
    assert [item["document"] for item in out.json()["results"]] == [
        {"text": DOCUMENTS[item["index"]]} for item in everything[:2]]


def test_tei_shape_with_texts(url):
    jina = post(url, "/rerank", {"query": QUERY, "documents": DOCUMENTS}).json()["results"]
    r = post(url, "/rerank", {"query": QUERY, "texts": DOCUMENTS, "return_text": True, "top_n": 3})
    assert r.status_code == 200, r.text
    assert r.json() == [{"index": item["index"], "score": item["relevance_score"], "text": DOCUMENTS[item["index"]]}
                        for item in jina[:3]]


@pytest.mark.parametrize("body, field", [
    ({"query": QUERY, "documents": []}, "documents"),
    ({"query": QUERY, "documents": None}, "documents"),
    ({"query": QUERY, "documents": 123}, "documents"),
    ({"query": QUERY, "documents": [1, 2, 3]}, "documents[0]"),
    ({"query": QUERY, "texts": ["a", None]}, "texts[1]"),
    ({"documents": DOCUMENTS}, "query"),
    ({"query": 5, "documents": DOCUMENTS}, "query"),
    ({"query": QUERY, "documents": DOCUMENTS, "texts": DOCUMENTS}, "texts"),
    ({"query": QUERY, "documents": DOCUMENTS, "top_n": 0}, "top_n"),
    ({"query": QUERY, "documents": DOCUMENTS, "top_n": "2"}, "top_n"),
    ({"query": QUERY, "documents": DOCUMENTS, "return_documents": "yes"}, "return_documents"),
    ({"query": QUERY, "documents": DOCUMENTS, "rank_fields": ["text"]}, "rank_fields"),
])
def test_bad_requests_are_400_in_llama_servers_shape(url, body, field):
    r = post(url, "/rerank", body)
    assert r.status_code == 400, r.text
    error = r.json()["error"]
    assert set(error) == {"code", "message", "type"} and error["code"] == 400
    assert error["type"] == "invalid_request_error" and error["message"].startswith(field)


def test_a_pair_longer_than_the_model_takes_is_a_400(url):
    r = post(url, "/rerank", {"query": QUERY, "documents": ["short", "word " * N_CTX_TRAIN]})
    assert r.status_code == 400
    error = r.json()["error"]
    assert error["type"] == "exceed_context_size_error" and f"at most {N_CTX_TRAIN}" in error["message"]
    assert post(url, "/rerank", {"query": QUERY, "documents": ["short"]}).status_code == 200  # and it goes on


def test_a_reranker_neither_generates_nor_embeds(url):
    """A BERT cross-encoder reads whole sequences: generation and embeddings are 400s, not a crash."""
    r = post(url, "/completion", {"prompt": "Hello", "n_predict": 1})
    assert r.status_code == 400 and "does not generate text" in r.json()["error"]["message"]
    r = post(url, "/embeddings", {"content": "Hello"})
    assert r.status_code == 400 and "reranking model" in r.json()["error"]["message"]
    assert post(url, "/rerank", {"query": QUERY, "documents": ["short"]}).status_code == 200


def test_a_model_that_is_no_reranker_is_a_clear_400(default_server):
    r = post(default_server.url, "/rerank", {"query": QUERY, "documents": DOCUMENTS})
    assert r.status_code == 400
    message = r.json()["error"]["message"]
    assert message.startswith("SmolLM2-135M-Instruct.Q4_1.gguf is not a reranking model")
    assert "pooling type rank" in message


def test_reranking_on_scores_any_model_as_llama_server_does(smollm2_path):
    """--reranking (Engine.load(reranking=True)): pooling rank on a decoder without a classification
    head; its score is the last token's first hidden value. Its embeddings are then refused."""
    with Engine.load(smollm2_path, n_ctx=256, n_parallel=1, reranking=True) as smol:
        assert smol.reranker
        ranking = smol.rerank(QUERY, DOCUMENTS, top_n=3)
        assert len(ranking.results) == 3 and len({r.score for r in ranking.results}) == 3
        assert [r.score for r in ranking.results] == sorted((r.score for r in ranking.results), reverse=True)
        assert smol.rerank(QUERY, DOCUMENTS, top_n=3) == ranking
        with pytest.raises(InvalidRequest, match="reranking model"):
            smol.embed("hello")


def test_a_batch_scores_as_one_document_at_a_time(reranker, smollm2_path, tmp_path):
    """llama.cpp reads a decode's scores n_cls_out floats apart, right only when a score layer
    (cls.output) makes the rows that narrow: without one (a decoder under --reranking, a
    one-layer head) each document is scored in a decode of its own."""
    one_layer = write_tiny_reranker(tmp_path / "one-layer-head.gguf", score_layer=False)
    with Engine.load(one_layer, n_ctx=128, n_parallel=1) as headless, \
            Engine.load(smollm2_path, n_ctx=256, n_parallel=1, reranking=True) as smol:
        for engine in (reranker, headless, smol):
            alone = {i: engine.rerank(QUERY, [d]).results[0].score for i, d in enumerate(DOCUMENTS)}
            together = {r.index: r.score for r in engine.rerank(QUERY, DOCUMENTS).results}
            # A bigger decode takes other F16 kernels: a hundredth apart, where reading another
            # sequence's row is off by the whole score.
            assert together == pytest.approx(alone, abs=0.05)


def test_the_ggufs_rerank_prompt_frames_the_pair(tmp_path):
    template = "query: {query} document: {document}"
    path = write_tiny_reranker(tmp_path / "templated.gguf", rerank_template=template)
    with Engine.load(path, n_ctx=128, n_parallel=1) as engine:
        assert engine.metadata["rerank_template"] == template
        ranking = engine.rerank("{document}", ["text"])
        framed = engine.tokenize("query: {document} document: text", add_special=False)
        assert ranking.prompt_tokens == len(framed)  # the query's own "{document}" is left alone


def test_engine_rerank_refuses_bad_input_with_typed_errors(reranker):
    with pytest.raises(InvalidRequest, match="documents: must be a non-empty list"):
        reranker.rerank(QUERY, [])
    with pytest.raises(InvalidRequest, match=r"documents\[1\]: must be a string"):
        reranker.rerank(QUERY, ["a", b"b"])
    with pytest.raises(InvalidRequest, match="top_n"):
        reranker.rerank(QUERY, ["a"], top_n=-1)
