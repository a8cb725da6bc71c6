"""Judging as a team: named annotators, judging queues with overlap, agreement between people, and
calibration of a model judge against them (issue 18).

Modules: annotator (who acts), tables (the store's schema for all of it), queue (hand out and take
in judgments), agreement (Krippendorff's alpha, pairwise agreement, disagreements and their
resolution), calibration (a model judge against the human consensus), export (per-annotator
judgments and reward-model pairs for core.data.export), pairwise (side-by-side queues), ranking
(Bradley-Terry with bootstrap intervals), pairwise_judge (a model judge on pairs, against people),
simulate (how many judgments each next-pair policy needs). This package file imports none of them, so
core.store can register the schema without an import cycle.
"""
