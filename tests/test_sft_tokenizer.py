"""Locally trained tokenizers, the chat template, and response-only loss flags."""

import pytest

from fastcomt.comt.chat import sft_messages
from fastcomt.tokenizer import encode_chat_examples, load_tokenizer, train_tokenizer

TEXTS = [
    "Ana has 12 apples. She eats 5 of them. How many apples are left?",
    "apples_left = apples_start - apples_eaten\nThe answer is 7.",
    "Ben buys 3 pens for 4 dollars each.",
    "Be brief.",
]


@pytest.fixture(scope="module")
def word_tok():
    return train_tokenizer(TEXTS, kind="number_word", number_max=40)


def test_one_token_per_number(word_tok):
    for n in (0, 7, 33, 40):  # 33 and 40 never occur in the corpus
        assert len(word_tok(f" {n}", add_special_tokens=False)["input_ids"]) == 1
        assert len(word_tok(f"{n}", add_special_tokens=False)["input_ids"]) == 1
    assert word_tok(" 41", add_special_tokens=False)["input_ids"] == [word_tok.unk_token_id]  # beyond number_max
    text = "Ana has 33 apples. She eats 40 of them."
    assert word_tok.decode(word_tok(text, add_special_tokens=False)["input_ids"]) == text
    assert word_tok.unk_token_id in word_tok(" zebra", add_special_tokens=False)["input_ids"]


def test_bpe_round_trip_and_determinism():
    tok = train_tokenizer(TEXTS * 3, kind="bpe", vocab_size=300)
    text = "Ben eats 12 pens; the answer is 7."
    assert tok.decode(tok(text, add_special_tokens=False)["input_ids"]) == text
    again = train_tokenizer(TEXTS * 3, kind="bpe", vocab_size=300)
    assert tok.backend_tokenizer.to_str() == again.backend_tokenizer.to_str()


def test_loss_only_on_the_response(word_tok, tmp_path):
    messages = sft_messages("Ana has 12 apples.", "The answer is 7.", system="Be brief.")
    [(ids, flags)] = encode_chat_examples(word_tok, [messages])
    prompt = [i for i, f in zip(ids, flags) if not f]
    response = [i for i, f in zip(ids, flags) if f]
    assert flags == sorted(flags)  # prompt first, then response
    assert (
        word_tok.decode(prompt) == "<|system|>\nBe brief.<|end|>\n<|user|>\nAna has 12 apples.<|end|>\n<|assistant|>\n"
    )
    assert word_tok.decode(response) == "The answer is 7.<|end|>\n"
    # The prompt tokens are exactly what generation sees.
    generation_prompt = word_tok.apply_chat_template(messages[:-1], tokenize=False, add_generation_prompt=True)
    assert word_tok(generation_prompt, add_special_tokens=False)["input_ids"] == prompt
    word_tok.save_pretrained(tmp_path / "tok")
    reloaded = load_tokenizer(tmp_path / "tok")
    assert encode_chat_examples(reloaded, [messages]) == [(ids, flags)]


def test_bad_arguments():
    with pytest.raises(ValueError, match="kind"):
        train_tokenizer(TEXTS, kind="chars")
    with pytest.raises(ValueError, match="number_max"):
        train_tokenizer(TEXTS, kind="number_word", number_max=-1)
    with pytest.raises(ValueError, match="assistant"):
        encode_chat_examples(train_tokenizer(TEXTS, kind="number_word", number_max=3), [sft_messages("q?")])


def test_loading_from_a_model_folder_keeps_our_tokenizer(tmp_path):
    # A model folder holds config.json too: AutoTokenizer would then pick the model type's tokenizer
    # class and split our word-level vocabulary into characters.
    from transformers import Qwen2Config

    from fastcomt.tokenizer import load_tokenizer, train_tokenizer

    tok = train_tokenizer(["apples = 12 - 5 = 7", "The answer is 7."], kind="number_word", vocab_size=4096)
    tok.save_pretrained(tmp_path)
    Qwen2Config(
        vocab_size=len(tok),
        hidden_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        num_key_value_heads=1,
        intermediate_size=64,
    ).save_pretrained(tmp_path)
    loaded = load_tokenizer(tmp_path)
    text = "apples = 12 - 5 = 7"
    assert loaded.encode(text, add_special_tokens=False) == tok.encode(text, add_special_tokens=False)
    assert len(loaded.tokenize(text)) == 7


def test_number_word_vocab_too_small_for_words_is_an_error():
    from fastcomt.tokenizer import train_tokenizer

    with pytest.raises(ValueError, match="vocab_size"):
        train_tokenizer(["a b c"], kind="number_word", vocab_size=2048, number_max=1000)
