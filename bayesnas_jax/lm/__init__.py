"""The recurrent language-model pipeline (RNN thesis (R)): the network and its
steps (`model`), the cell search (`search`), a derived cell's training (`train`)."""
