"""Nearest vocabulary tokens of prompt vectors (the paper's §7), and the script that prints them."""
import json
import os
import sys

import jax
import numpy as np
import pytest

from prompt_tuning.analysis import neighbors
from prompt_tuning.checkpoints import restore
from prompt_tuning.model import prompts

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "scripts"))
import prompt_neighbors  # noqa: E402

QUICKSTART = os.path.join(ROOT, "prompt_tuning", "assets", "quickstart", "t5_1_1_tiny_lm")


def test_nearest_finds_the_rows_a_prompt_points_at_whatever_their_scale():
  rng = np.random.RandomState(0)
  embedding = rng.normal(size=(500, 16)).astype(np.float32)
  chosen = [7, 123, 499, 7]
  prompt = embedding[chosen] * np.array([[3.0], [0.2], [1.0], [50.0]]) + 1e-3 * rng.normal(size=(4, 16))
  ids, sims = neighbors.nearest(prompt, embedding, k=6)
  assert ids.shape == sims.shape == (4, 6)
  assert ids[:, 0].tolist() == chosen
  np.testing.assert_allclose(sims[:, 0], 1.0, atol=1e-4)
  assert (np.diff(sims, axis=1) <= 0).all()  # best first
  brute = np.argsort(-(prompt / np.linalg.norm(prompt, axis=1, keepdims=True))
                     @ (embedding / np.linalg.norm(embedding, axis=1, keepdims=True)).T, axis=1)[:, :6]
  assert ids.tolist() == brute.tolist()


def test_a_prompt_of_another_width_is_refused():
  with pytest.raises(ValueError, match="model size"):
    neighbors.nearest(np.zeros((4, 8)), np.zeros((10, 16)))


def test_token_names_cover_pieces_sentinels_and_padding_rows():
  assert [neighbors.token_name(i) for i in (0, 1, 2)] == ["<pad>", "</s>", "<unk>"]
  assert neighbors.token_name(32099) == "<extra_id_0>" and neighbors.token_name(32000) == "<extra_id_99>"
  assert neighbors.token_name(32127) == "<unused_32127>"
  assert neighbors.token_name(prompts.encode_text(None, "positive")[0]) == "▁positive"


def test_script_on_a_prompt_made_of_label_embeddings(tmp_path, capsys):
  embedding = restore.open_backbone(QUICKSTART)["token_embedder/embedding"].read()
  init = prompts.from_string("positive negative")
  prompt = np.asarray(init(jax.random.PRNGKey(0), (6, embedding.shape[1]), embedding))
  path = str(tmp_path / "prompt.npy")
  np.save(path, prompt)
  assert prompt_neighbors.main([path, QUICKSTART, "--top_k", "3", "--labels", "positive,negative,awful",
                                "--json"]) == 0
  result = json.loads(capsys.readouterr().out)
  first, second = result["positions"][0]["neighbors"], result["positions"][1]["neighbors"]
  assert first[0][0] == "▁positive" and first[0][1] == pytest.approx(1.0, abs=1e-4) and len(first) == 3
  assert second[0][0] == "▁negative"
  assert result["labels"]["positive"][0] == 0 and result["labels"]["negative"][0] == 1
  assert 0 not in result["labels"]["awful"] and 1 not in result["labels"]["awful"]

  assert prompt_neighbors.main([path, QUICKSTART, "--top_k", "2"]) == 0  # the table
  lines = capsys.readouterr().out.splitlines()
  assert len(lines) == 6 and lines[0].split()[:2] == ["0", "▁positive"]


def test_script_errors_are_one_line(tmp_path, capsys):
  path = str(tmp_path / "narrow.npy")
  np.save(path, np.zeros((3, 8), np.float32))
  assert prompt_neighbors.main([path, QUICKSTART]) == 2
  err = capsys.readouterr().err.strip().splitlines()
  assert len(err) == 1 and err[0].startswith("prompt_neighbors: error:") and "model size" in err[0]


def test_text_agreement_counts_the_positions_still_at_their_text_token():
  """A wayward prompt's report: positions whose nearest piece is the text's token there, the top-k
  count, the wayward distance ||P - E||^2 / P and the projection."""
  embedding = np.asarray(neighbors.input_embedding(QUICKSTART), np.float32)
  text = "the pasta was superb ."
  ids = prompts.encode_text(None, text)
  prompt = embedding[ids].copy()
  exact = neighbors.text_agreement(prompt, embedding, text)
  assert exact["tokens"] == exact["nearest"] == exact["top_k"] == len(ids) and exact["distance"] == 0
  assert exact["projection"] == " ".join(neighbors.token_name(i) for i in ids)
  prompt[1] = embedding[prompts.encode_text(None, "awful")[0]]  # one position moved onto another word
  moved = neighbors.text_agreement(prompt, embedding, text)
  assert moved["nearest"] == len(ids) - 1
  np.testing.assert_allclose(moved["distance"], np.sum((prompt - embedding[ids]) ** 2) / len(ids), rtol=1e-5)
  with pytest.raises(ValueError, match=f"the text has {len(ids)} tokens but the prompt {len(ids) - 1} positions"):
    neighbors.text_agreement(prompt[:-1], embedding, text)
