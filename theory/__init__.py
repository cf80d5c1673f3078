"""maml_depth.theory"""
