"""The ``neighbours`` suite: results of the field beside the paper, as executable claims
(one module per claim, registered on import with ``suite="neighbours"``)."""
