"""maml_depth.validation"""
