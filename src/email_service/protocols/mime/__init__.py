"""RFC 5322 / RFC 2045 message parsing (:mod:`.parse`) and building (:mod:`.build`) with the stdlib ``email``."""
