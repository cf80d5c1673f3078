"""maml_depth.numerics"""
