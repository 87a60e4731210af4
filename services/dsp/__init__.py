"""Signal and text processing.

Audio I/O, voice activity, endpointing, tempo, stream encoding, sentence splitting, subtitles.
"""
