"""Tiny random text-to-speech checkpoints (Sesame CSM with its Mimi codec, VITS / MMS-TTS).

Both load through the ordinary `from_pretrained` path with a working processor or tokenizer and
no hub access; their audio is noise.

CSM. `CsmForConditionalGeneration` at toy sizes: a 2-layer backbone, a 1-layer depth decoder, 4
codebooks (32 in csm-1b) of 128 entries (so that 4 x 128 exceeds the text token ids, which
`CsmConfig.validate_token_ids` wrongly checks against the codebook vocabulary and warns about
on every load), and a Mimi codec that keeps Mimi's convolution layout
(kernel sizes, strides, 1920 samples a frame at 24 kHz, 12.5 frames a second), so the
processor's frame count for a reference recording (`CsmProcessor._get_encoded_length`, whose
kernel sizes are hard-coded for the real Mimi) matches what the codec produces. Mimi requires a
power-of-two `codebook_size`, and it is kept equal to CSM's `vocab_size`, so every code the
random backbone can write is one the codec can decode (csm-1b has 2051 entries for Mimi's 2048
and relies on its training never to write the last three). Mimi's codebooks are initialised
to zeros (`embed_sum`), which would quantise every recording to code 0 (CSM's end-of-audio
code): they are filled with random centroids here. The tokenizer is a byte-level BPE without
merges (256 byte tokens, as GPT-2 and Llama 3 spell bytes) plus csm-1b's four specials
(`<|begin_of_text|>`, `<|end_of_text|>`, `<|AUDIO|>`, `<|audio_eos|>`) and one more of Llama 3's
control tokens (`<|eot_id|>`). As in csm-1b, only begin and end of text are named special tokens:
the others are added tokens that the tokenizer matches in any text but that are not among
`all_special_tokens` (text that spells `<|AUDIO|>` is read as an audio frame unless the engine
keeps user text apart). With csm-1b's chat template
(`[speaker]text` between begin and end of text, `<|AUDIO|><|audio_eos|>` after a turn that has
audio) and its post-processor (begin and end of text around `$A`).

VITS. `VitsModel` with one-layer everything and a few channels; the HiFi-GAN keeps MMS-TTS's
upsampling (256 samples a frame at 16 kHz). `VitsTokenizer` over lower-case letters, digits,
space and a little punctuation, no phonemizer (as MMS-TTS), with `language` "eng" in
tokenizer_config.json (MMS-TTS checkpoints are one language each). Random flows are close to
the identity, so durations come out near one frame a token and lengths follow the text.
`num_speakers` > 1 builds a multi-speaker model (speaker embeddings), as VCTK-style VITS.

Not registered here: speechmesh.tiny.models registers builders and marks the result as
random weights.
"""

from __future__ import annotations

import json
import string
from pathlib import Path

import torch
from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers, processors
from transformers import (
    CsmConfig,
    CsmDepthDecoderConfig,
    CsmForConditionalGeneration,
    CsmProcessor,
    EncodecFeatureExtractor,
    MimiConfig,
    PreTrainedTokenizerFast,
    VitsConfig,
    VitsModel,
    VitsTokenizer,
)

from speechmesh.tiny.parts import kept_generation, no_dropout, save, seeded

# -- CSM -------------------------------------------------------------------------------------

#: Codebooks per audio frame (csm-1b: 32) and entries per codebook (csm-1b: 2051, Mimi: 2048).
CSM_CODEBOOKS = 4
CSM_CODEBOOK_SIZE = 128
CSM_SAMPLE_RATE = 24000
BOS, EOS, AUDIO, AUDIO_EOS = "<|begin_of_text|>", "<|end_of_text|>", "<|AUDIO|>", "<|audio_eos|>"
#: Added tokens that are not named special tokens (csm-1b: Llama 3's reserved tokens, two of
#: them renamed for audio).
CSM_CONTROL_TOKENS = (AUDIO, AUDIO_EOS, "<|eot_id|>")

#: csm-1b's chat template (sesame/csm-1b, as written by transformers' conversion script).
CSM_CHAT_TEMPLATE = """
{%- for message in messages %}
    {%- if not message['role'] is string or not message['role'].isdigit() %}
        {{- raise_exception("The role must be an integer or a stringified integer (e.g. '0') designating the speaker id") }}
    {%- endif %}
    {%- set content = message['content'] %}
    {%- if content is not iterable or content is string %}
        {{- raise_exception("The content must be a list") }}
    {%- endif %}
    {%- set content_types = content | map(attribute='type') | list %}
    {%- if loop.last %}
        {%- if 'text' not in content_types %}
            {{- raise_exception("The last message must include one item of type 'text'") }}
        {%- elif (content_types | select('equalto', 'text') | list | length > 1) or (content_types | select('equalto', 'audio') | list | length > 1) %}
            {{- raise_exception("At most two items are allowed in the last message: one 'text' and one 'audio'") }}
        {%- endif %}
    {%- else %}
        {%- if content_types | select('equalto', 'text') | list | length != 1
              or content_types | select('equalto', 'audio') | list | length != 1 %}
            {{- raise_exception("Each message (except the last) must contain exactly one 'text' and one 'audio' item") }}
        {%- elif content_types | reject('in', ['text', 'audio']) | list | length > 0 %}
            {{- raise_exception("Only 'text' and 'audio' types are allowed in content") }}
        {%- endif %}
    {%- endif %}
{%- endfor %}
{%- for message in messages %}
    {{- bos_token }}
    {{- '[' + message['role'] + ']' }}
    {{- message['content'][0]['text'] }}
    {{- eos_token }}
    {%- if message['content']|length > 1 %}
        {{- '<|AUDIO|><|audio_eos|>' }}
    {%- endif %}
{%- endfor %}
"""  # noqa: E501 (the template's own lines)


def _csm_tokenizer() -> PreTrainedTokenizerFast:
    """Byte-level BPE without merges; the control tokens follow the 256 byte tokens."""
    vocab = {char: i for i, char in enumerate(sorted(pre_tokenizers.ByteLevel.alphabet()))}
    for token in (BOS, EOS, *CSM_CONTROL_TOKENS):
        vocab[token] = len(vocab)
    backend = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    # As Llama 3's tokenizer.json lists them: added, special, matched anywhere in a text.
    backend.add_special_tokens(
        [AddedToken(token, special=True, normalized=False) for token in CSM_CONTROL_TOKENS]
    )
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    backend.post_processor = processors.TemplateProcessing(
        single=f"{BOS}:0 $A:0 {EOS}:0",
        pair=f"{BOS}:0 $A:0 {EOS}:0 {BOS}:1 $B:1 {EOS}:1",
        special_tokens=[(BOS, vocab[BOS]), (EOS, vocab[EOS])],
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=backend,
        bos_token=BOS,
        eos_token=EOS,
        pad_token=EOS,  # as csm-1b
        model_max_length=2048,
    )


def _mimi_config() -> MimiConfig:
    hidden = 16
    return MimiConfig(
        sampling_rate=CSM_SAMPLE_RATE,
        hidden_size=hidden,
        num_filters=2,  # doubles at each of the 4 downsamplings: 2, 4, 8, 16, 32 channels
        codebook_size=CSM_CODEBOOK_SIZE,
        codebook_dim=8,
        vector_quantization_hidden_dimension=8,
        num_quantizers=CSM_CODEBOOKS,
        num_semantic_quantizers=1,
        upsample_groups=hidden,
        num_hidden_layers=1,
        intermediate_size=32,
        num_attention_heads=2,
        num_key_value_heads=2,
    )


def build_csm(dest: Path, seed: int) -> None:
    """Writes a tiny random CSM (with its Mimi codec) and its processor into `dest`."""
    tokenizer = _csm_tokenizer()
    ids = tokenizer.get_vocab()
    hidden = 32
    # The backbone and the depth decoder alike: 32 wide, two attention heads sharing one
    # key-value head, over the same codebooks.
    decoder = {
        "num_codebooks": CSM_CODEBOOKS,
        "vocab_size": CSM_CODEBOOK_SIZE,
        "hidden_size": hidden,
        "intermediate_size": 64,
        "num_attention_heads": 2,
        "num_key_value_heads": 1,
    }
    depth = CsmDepthDecoderConfig(
        **decoder,
        backbone_hidden_size=hidden,
        num_hidden_layers=1,
        max_position_embeddings=CSM_CODEBOOKS + 1,
    )
    config = CsmConfig(
        **decoder,
        text_vocab_size=len(tokenizer),
        num_hidden_layers=2,
        max_position_embeddings=2048,
        # Weights wider than the default 0.02, so that outputs depend on the inputs.
        initializer_range=0.3,
        bos_token_id=ids[BOS],
        pad_token_id=ids[AUDIO],  # as csm-1b
        audio_token_id=ids[AUDIO],
        audio_eos_token_id=ids[AUDIO_EOS],
        codebook_eos_token_id=0,
        codebook_pad_token_id=CSM_CODEBOOK_SIZE - 1,
        depth_decoder_config=depth,
        codec_config=_mimi_config(),
    )
    model = seeded(CsmForConditionalGeneration, config, seed)
    quantizer = model.codec_model.quantizer
    with torch.no_grad():
        for residual in (
            quantizer.semantic_residual_vector_quantizer,
            quantizer.acoustic_residual_vector_quantizer,
        ):
            for layer in residual.layers:
                layer.codebook.embed_sum.normal_()
    # As csm-1b ships it: sampling at 0.9 among the 50 likeliest, in both decoders.
    sampling = {"do_sample": True, "top_k": 50, "temperature": 0.9}
    generation = kept_generation(
        bos_token_id=ids[BOS],
        pad_token_id=ids[AUDIO],
        max_new_tokens=125,
        **sampling,
        **{f"depth_decoder_{key}": value for key, value in sampling.items()},
    )
    feature_extractor = EncodecFeatureExtractor(feature_size=1, sampling_rate=CSM_SAMPLE_RATE)
    processor = CsmProcessor(feature_extractor, tokenizer, chat_template=CSM_CHAT_TEMPLATE)
    save(dest, model, processor, generation)


# -- VITS ------------------------------------------------------------------------------------

VITS_LANGUAGE = "eng"
VITS_SAMPLE_RATE = 16000


#: MMS-TTS's English alphabet: letters, space and a little punctuation, no digits.
MMS_CHARACTERS = " " + string.ascii_lowercase + "'-"


def build_vits(
    dest: Path,
    seed: int,
    num_speakers: int = 1,
    *,
    characters: str = " " + string.ascii_lowercase + string.digits + "'-",
    language: str = VITS_LANGUAGE,
    is_uroman: bool = False,
    phonemize: bool = False,
) -> None:
    """Writes a tiny random VITS (MMS-TTS layout) and its tokenizer into `dest`: by default
    letters and digits; `characters=MMS_CHARACTERS` as MMS-TTS English (no digits),
    `language` its ISO 639-3 code, `is_uroman` a non-Latin MMS voice (needs uroman),
    `phonemize` a voice of espeak-ng phonemes (needs phonemizer)."""
    characters = list(dict.fromkeys(characters))
    # MMS-TTS vocabularies put the blank that `add_blank` intersperses at id 0.
    vocab = {token: i for i, token in enumerate(["_", *characters, "<unk>"])}
    dest.mkdir(parents=True, exist_ok=True)
    vocab_file = dest / "vocab.json"
    vocab_file.write_text(json.dumps(vocab, ensure_ascii=False, indent=2) + "\n")
    tokenizer = VitsTokenizer(
        vocab_file=str(vocab_file),
        pad_token="_",
        unk_token="<unk>",
        language=language,
        add_blank=True,
        normalize=True,
        phonemize=phonemize,
        is_uroman=is_uroman,
    )
    config = VitsConfig(
        vocab_size=len(vocab),
        hidden_size=16,
        num_hidden_layers=1,
        num_attention_heads=2,
        ffn_dim=32,
        flow_size=8,
        spectrogram_bins=17,
        upsample_initial_channel=16,
        upsample_rates=[8, 8, 2, 2],
        upsample_kernel_sizes=[16, 16, 4, 4],
        resblock_kernel_sizes=[3],
        resblock_dilation_sizes=[[1, 3]],
        duration_predictor_filter_channels=16,
        duration_predictor_num_flows=1,
        prior_encoder_num_flows=1,
        prior_encoder_num_wavenet_layers=1,
        posterior_encoder_num_wavenet_layers=1,
        depth_separable_num_layers=1,
        num_speakers=num_speakers,
        speaker_embedding_size=8 if num_speakers > 1 else 0,
        sampling_rate=VITS_SAMPLE_RATE,
        pad_token_id=0,
        **no_dropout(
            "layerdrop",
            "hidden_dropout",
            "attention_dropout",
            "activation_dropout",
            "duration_predictor_dropout",
        ),
    )
    save(dest, seeded(VitsModel, config, seed), tokenizer)
