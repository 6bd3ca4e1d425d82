import LoomNN
