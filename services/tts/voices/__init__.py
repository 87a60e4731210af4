"""Stored voices: the `voices/{voice}` resources, kept on disk so they survive restarts.

By job: `records` (what a voice is, its id rules and the store's errors), `files` (the layout
on disk, writing and reading a voice's files), `store` (VoiceStore: the index, start-up,
create, read, list, delete).

A voice is its metadata, its normalised reference recording and the VoicePrompt arrays an
engine prepared from it. Layout under the store's directory:

    <root>/
      .staging/                  work in progress, same filesystem; emptied at start-up
        create-<hex>/            a voice being written
        delete-<hex>/            a deleted voice being removed
      .corrupt/                  voice directories that failed to load, moved aside (kept)
      <owner-dir>/               "anonymous" for owner "", else "o-" + sha256(owner) in hex
        <voice_id>/
          voice.json             metadata (format, ids, owner, texts, times, file sizes)
          reference.flac         the normalised reference recording, 24-bit FLAC
          prompt.npz             the VoicePrompt arrays (an uncompressed .npz; no pickles)

Durability: a voice is written whole into a staging directory, every file and the directory
are fsynced, then the directory is renamed into place (atomic on POSIX; rename refuses to
replace a non-empty directory, so of two creates of one id exactly one wins) and the parent is
fsynced. A crash therefore never leaves a half-written voice visible. Deletes rename the voice
into staging, then remove it. At start-up, staging is emptied and a voice directory that fails
to load (missing, truncated or unreadable files) is logged and moved to `.corrupt/`.

Each owner has its own namespace of voice ids, so one owner can neither see, delete nor even
learn of the existence of another's voices (the same id may exist for both).

The store is synchronous and thread-safe (one lock guards the index; files are written and
read outside it); the TTS domain calls it with `asyncio.to_thread`. Several processes may share a
directory (TTS replicas on one ReadWriteMany volume): every lookup checks the voice's
voice.json on disk and every listing scans the owner's folder, so each sees the others' creates
and deletes at once; the atomic rename keeps ids unique across them, and start-up only removes
staging entries old enough to be leftovers of a crash.
"""
