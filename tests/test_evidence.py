"""Evidence selection: grows from the best sentence toward the better neighbour to a snippet's size."""

import numpy as np
import pytest

from qa.models import Passage
from qa.retrieval.evidence import EvidenceSelector, text_size
from qa.text.sentences import split_sentences


def _passage(text: str, start: int = 100) -> tuple[Passage, list[tuple[int, int]]]:
    passage = Passage("p1", "d1", None, 1, 0, "zh", start, start + len(text), text)
    return passage, [(start + s, start + e) for s, e in split_sentences(text)]


ZH = "第一句话讲天气。第二句话讲交通。第三句话讲答案在这里出现。第四句话讲别的事情。第五句话也讲别的事情。"
EN = ("The first sentence is about the weather in the old harbour town and goes on for quite a while, "
      "long enough to stand on its own as a readable snippet of text. The second sentence holds the "
      "answer, which is 308 points, and it is also written out at a comfortable length for a reader. "
      "The third sentence is unrelated and talks about something else entirely, for a long time too.")


def test_text_size_counts_cjk_three_times():
    assert text_size("abc") == 3 and text_size("中文") == 6 and text_size("G60 高铁") == 4 + 6


def test_short_chinese_sentences_grow_to_a_snippet_toward_the_better_neighbour():
    passage, spans = _passage(ZH)
    assert len(spans) == 5
    scores = np.array([0.1, 0.5, 0.9, 0.3, 0.2])
    ev = EvidenceSelector(join_margin=0.1, min_chars=55).select(passage, spans, scores)
    # best = 3rd sentence (12 CJK + "。" = 37); grows to the 2nd (0.5 beats 0.3): 19 CJK + 2 = 59 >= 55, stops.
    assert ev.text == "第二句话讲交通。第三句话讲答案在这里出现。"
    assert passage.text[ev.start - passage.start:ev.end - passage.start] == ev.text
    assert (ev.start, ev.end) == (spans[1][0], spans[2][1])


def test_a_long_best_sentence_stands_alone_unless_a_neighbour_nearly_ties():
    passage, spans = _passage(EN)
    assert len(spans) == 3
    selector = EvidenceSelector(join_margin=0.1, min_chars=100)
    alone = selector.select(passage, spans, np.array([0.2, 0.8, 0.3]))
    assert alone.text.startswith("The second sentence") and alone.text.endswith("reader.")
    tie = selector.select(passage, spans, np.array([0.75, 0.8, 0.3]))
    assert tie.text.startswith("The first sentence") and tie.text.endswith("reader.")


def test_the_whole_passage_when_it_is_smaller_than_the_snippet_size():
    passage, spans = _passage(ZH)
    ev = EvidenceSelector(min_chars=10_000).select(passage, spans, np.array([0.1, 0.5, 0.9, 0.3, 0.2]))
    assert (ev.start, ev.end, ev.text) == (passage.start, passage.end, passage.text)


@pytest.mark.parametrize("spans, scores", [(None, None), ([(100, 110)], np.array([0.5]))])
def test_no_sentences_means_the_whole_passage(spans, scores):
    passage, _ = _passage(ZH)
    assert EvidenceSelector().select(passage, spans, scores).text == passage.text


def test_zero_size_keeps_the_best_sentence_alone():
    passage, spans = _passage(ZH)
    ev = EvidenceSelector(join_margin=0.1, min_chars=0).select(passage, spans, np.array([0.1, 0.5, 0.9, 0.3, 0.2]))
    assert ev.text == "第三句话讲答案在这里出现。"
