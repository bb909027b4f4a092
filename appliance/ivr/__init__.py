"""The local failover IVR: flows as data, their validation and interpretation, prompts and languages.

Everything here runs in the control process and is sans-I/O. The audio itself (prompt playback with 20 ms
pacing, voicemail recording, DTMF detection) runs in the media workers on the caller's media leg
(:mod:`appliance.media.ivr_endpoint`); the session interpreter (:mod:`appliance.ivr.session`) drives it
through actions the call-control glue turns into media commands.
"""
