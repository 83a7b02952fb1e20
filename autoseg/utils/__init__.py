"""Small helpers shared by the stages: atomic files, JSON artifacts, worker pools."""
