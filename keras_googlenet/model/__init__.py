"""The network: Table 1 as data (`table`), the Keras builder (`googlenet`), the summary job."""
