from .macs import count_macs, head_macs
