"""B-channel audio: the TDM media worker of one E1 span (A-law TDM frames ↔ RTP PCMA/PCMU).

Each B-channel call control opens becomes an RTP endpoint on the worker's address, so the rest of the
appliance treats a PRI call's audio like any RTP leg. The pieces:

* :mod:`~appliance.media.tdm.layout` — the fixed timeslot → RTP port map both processes share;
* :mod:`~appliance.media.tdm.frames` — TDM frame → RTP packet (the packetiser);
* :mod:`~appliance.media.tdm.jitter` — RTP → 160-octet frames (the jitter buffer);
* :mod:`~appliance.media.tdm.pacer` — the span's 20 ms tick schedule and its pacing-error histogram;
* :mod:`~appliance.media.tdm.bridge` — one span's timeslots, commands and counters (sans-I/O);
* :mod:`~appliance.media.tdm.control` — the CBOR control protocol (``control.cddl``), and
  :mod:`~appliance.media.tdm.commands` — a command datagram in, its reply out;
* :mod:`~appliance.media.tdm.worker` — the process; :mod:`~appliance.media.tdm.client` — its driver.
"""
