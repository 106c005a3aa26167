"""The synthetic demo region: generated from a fixed seed (`generate`) and loaded through the
normal ingest path (`load`)."""
