"""Judging as a team: judging queues with overlap, agreement between people, and calibration of a
model judge against them; one floor above the engines (core/reer, core/r2).

Modules: queue (hand out and take in judgments), agreement (Krippendorff's alpha, pairwise agreement,
disagreements and their resolution), calibration (a model judge against the human consensus), feed
(the people's judgment of a waiting R2 text back to its run), export (per-annotator judgments and
reward-model pairs for core.export), pairwise (side-by-side queues), ranking (Bradley-Terry with
bootstrap intervals), pairwise_judge (a model judge on pairs, against people), simulate (how many
judgments each next-pair policy needs). Who acts is core.annotators; the tables are in core.schema.
"""
