"""Embedding spaces: `inputs` (what a model reads, plain data) and `reads` (filling it from
the warehouse), `hierarchy` (child sets and references), `child_plans` / `child_stats` (the
child statistics), `model`, `last_layer`, `principal`, `objective`, `training_plan`,
`training`, `space` (a trained space: embed, save, load), `projection`, and the neighbours
(`neighbours`: the index; `neighbour_table`: `ml.<space>_neighbours`).
"""
