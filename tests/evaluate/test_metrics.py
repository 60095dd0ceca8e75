"""Metrics against hand-computed cases: top-k accuracy, recall@k with ties, prompt-template averaging."""

import numpy as np
import pytest

from curate.evaluate.metrics import (
    TEMPLATES,
    class_prompts,
    hits_at_k,
    retrieval_recall,
    topk_accuracy,
    zeroshot_weights,
)


def test_topk_accuracy_on_a_crafted_score_matrix():
    logits = np.array([
        [0.9, 0.1, 0.2, 0.3, 0.4, 0.5],  # label 0 ranks first
        [0.9, 0.8, 0.7, 0.6, 0.5, 0.1],  # label 4 ranks fifth
        [0.5, 0.9, 0.8, 0.7, 0.6, 0.4],  # label 5 ranks last
    ])
    assert topk_accuracy(logits, np.array([0, 4, 5]), (1, 2, 5)) == {1: 1 / 3, 2: 1 / 3, 5: 2 / 3}


def test_ties_count_against_the_query_and_k_is_capped_at_the_candidates():
    assert topk_accuracy(np.array([[0.5, 0.5, 0.1]]), np.array([0]), (1, 2)) == {1: 0.0, 2: 1.0}
    assert topk_accuracy(np.zeros((4, 3)), np.array([0, 1, 2, 0]), (1, 2, 5)) == {1: 0.0, 2: 0.0, 5: 1.0}


def test_hits_at_k_uses_the_best_positive_and_needs_one_per_query():
    scores = np.array([[0.1, 0.9, 0.5, 0.7]])
    assert hits_at_k(scores, np.array([[True, False, True, False]]), (1, 2, 3)) == {1: 0.0, 2: 0.0, 3: 1.0}
    with pytest.raises(ValueError, match="positive"):
        hits_at_k(scores, np.zeros((1, 4), dtype=bool), (1,))
    with pytest.raises(ValueError, match="shape"):
        hits_at_k(scores, np.ones((2, 4), dtype=bool), (1,))


def test_recall_at_k_with_tied_similarities():
    image = np.eye(3)
    text = np.array([[1.0, 0, 0], [1.0, 0, 0], [0, 0, 1.0]])  # text 1 ties with text 0 for image 0
    assert retrieval_recall(image, text, ["x", "y", "z"], (1, 5)) == {
        "image_to_text_r1": 1 / 3, "image_to_text_r5": 1.0,  # image 0 tied (miss), image 1 all zero (miss)
        "text_to_image_r1": 2 / 3, "text_to_image_r5": 1.0,  # text 1 scores image 0 higher than image 1
    }


def test_identical_captions_count_as_right_for_each_other():
    image = np.eye(3)
    text = np.array([[1.0, 0, 0], [1.0, 0, 0], [0, 0, 1.0]])
    recall = retrieval_recall(image, text, ["x", "x", "z"], (1,))
    assert recall == {"image_to_text_r1": 2 / 3, "text_to_image_r1": 1.0}


def test_templates_are_averaged_after_normalizing_then_renormalized():
    prompts = class_prompts(["cat", "dog"], ("a {}.", "the {}."))
    assert prompts == ["a cat.", "the cat.", "a dog.", "the dog."]
    embeddings = np.array([[2.0, 0.0], [0.0, 3.0], [1.0, 0.0], [5.0, 0.0]])
    weights = zeroshot_weights(embeddings, 2)
    np.testing.assert_allclose(weights, [[2 ** -0.5, 2 ** -0.5], [1.0, 0.0]])
    assert len(class_prompts(["a", "b", "c"])) == 3 * len(TEMPLATES)
    with pytest.raises(ValueError, match="classes"):
        zeroshot_weights(np.ones((3, 2)), 2)
