from torchslim.zoo.text import sentences


def test_corpus_is_deterministic_english_and_splits_are_disjoint():
    calib, ev = sentences(split="calib"), sentences(split="eval")
    assert len(calib) >= 1000 and len(ev) >= 1000
    assert not set(calib) & set(ev)
    assert sentences(50, split="eval") == ev[:50]
    assert all(s.endswith(".") and s[0].isupper() and 6 <= len(s.split()) <= 40 for s in ev[:200])
    assert sentences(10, split="all") == sentences(10, split="all")
