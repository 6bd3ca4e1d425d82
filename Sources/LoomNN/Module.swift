import LoomTensor
