"""maml_depth.paper_figures"""
