# Makes the extra tokenizer fixtures of this directory with the reference libraries (HuggingFace
# `tokenizers` 0.23.2 and `sentencepiece` 0.2.2). Not run by the tests, which only read its outputs.
#   python3 make_extra.py BROWN_VAL_TXT
# BROWN_VAL_TXT: data/brown/val.txt as `deno task data:brown` writes it.
import json, sys
import sentencepiece as spm
from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers

val = open(sys.argv[1], encoding="utf-8").read()

# Strings that exercise what expected.json does not: Unicode whitespace as the Rust regex sees it
# (U+0085 is a space, U+FEFF is not), added tokens inside text, normalizer rules, unknown characters.
EXTRA = [
    "a\x85\x85b", "a \x85b", "a\ufeff\ufeffb", "a \ufeffb", "x\u2028 y", "a  \u3000b", "a\xa0\xa0b",
    "\x1c\x1d text \x1f", "tab\t\tand\r\n\r\nCRLF  \n", "<s>hello</s> <pad>world<s>", "a<s>b</s>c",
    "ﬁne ①② ＡＢＣ１２３ Ⅻ ㍿", "e\u0301 vs \u00e9", "x\u200by\u200dz", "\u00a0nbsp\u00a0 ", "   ",
    "<sep> and [MASK] and <sep><sep>", "🙂 emoji 👍🏽 and 𝔘𝔫𝔦𝔠𝔬𝔡𝔢", "ǅungla ΑΒΓ αβγ Ωmega",
    "Ⅰ love ½ cups", "  lead", "trail  ", " ", "\n", "\n\n\n", "a\n\n\nb", "x" * 300,
    "don't you'll I'm we've they're she'd", "123456789 3.14159 1,000,000", "#$%^&*()_+-=[]{}|;:',.<>?/~`",
    "עברית العربية हिन्दी ไทย 한국어", "\u0000\u0001\u0007\u001b[0m", "₀₁₂ ⁰¹² ㊀ ⑴",
    "abc\u2581", "\u2581", "\u2581\u2581 x \u2581", "a \u2581 b", " \u2581a", "x  \u2581  y",
]

# A HuggingFace byte-level BPE trained on the val split as one sequence: our trainer must match it.
tok = Tokenizer(models.BPE())
tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
tok.decoder = decoders.ByteLevel()
tok.train_from_iterator([val], trainers.BpeTrainer(
    vocab_size=1000, special_tokens=["<pad>", "<s>", "</s>"],
    initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False))
tok.save("hf-train-brown-val-1000.json")

hf = Tokenizer.from_file("hf-bytelevel-bpe-2k.json")

# The shape of recent byte-level tokenizers (Llama 3, Qwen 2): an NFC normalizer, a Split regex, then
# ByteLevel without its own regex.
LLAMA3 = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*"
          r"|\s*[\r\n]+|\s+(?!\S)|\s+")
split = Tokenizer(models.BPE())
split.normalizer = normalizers.NFC()
split.pre_tokenizer = pre_tokenizers.Sequence([
    pre_tokenizers.Split(Regex(LLAMA3), behavior="isolated", invert=False),
    pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])
split.decoder = decoders.ByteLevel()
split.train_from_iterator([val], trainers.BpeTrainer(
    vocab_size=800, special_tokens=["<|begin_of_text|>", "<|end_of_text|>"],
    initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False))
split.save("hf-split-nfc-bpe-800.json")

# SentencePiece models beyond the shared fixture: the default nmt_nfkc normalizer (a precompiled
# character map) with user-defined symbols and byte fallback; and one without byte fallback, without
# dummy prefix and without extra-whitespace removal.
lines = [l for l in val.split("\n") if l.strip()]
spm.SentencePieceTrainer.train(
    sentence_iterator=iter(lines), model_prefix="sp-nfkc-bpe-600", model_type="bpe", vocab_size=600,
    byte_fallback=True, user_defined_symbols=["<sep>", "[MASK]"], num_threads=1, minloglevel=2)
spm.SentencePieceTrainer.train(
    sentence_iterator=iter(lines), model_prefix="sp-plain-bpe-500", model_type="bpe", vocab_size=500,
    byte_fallback=False, normalization_rule_name="identity", add_dummy_prefix=False,
    remove_extra_whitespaces=False, character_coverage=0.98, num_threads=1, minloglevel=2)
sp2k = spm.SentencePieceProcessor(model_file="sp-bpe-2k.model")
nfkc = spm.SentencePieceProcessor(model_file="sp-nfkc-bpe-600.model")
plain = spm.SentencePieceProcessor(model_file="sp-plain-bpe-500.model")

out = []
for text in EXTRA:
    e = {"text": text, "hf_ids": hf.encode(text, add_special_tokens=False).ids}
    e["hf_decoded"] = hf.decode(e["hf_ids"], skip_special_tokens=False)
    e["hf_pretokens"] = [w for w, _ in hf.pre_tokenizer.pre_tokenize_str(text)]
    e["hf_split_ids"] = split.encode(text, add_special_tokens=False).ids
    e["hf_split_decoded"] = split.decode(e["hf_split_ids"], skip_special_tokens=False)
    for name, sp in [("sp", sp2k), ("sp_nfkc", nfkc), ("sp_plain", plain)]:
        ids = sp.encode(text)
        e[name + "_ids"] = ids
        e[name + "_decoded"] = sp.decode(ids)
    out.append(e)
json.dump(out, open("extra-expected.json", "w"), ensure_ascii=False, indent=1)
print(len(out), "cases")
