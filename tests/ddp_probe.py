"""Run inside a multi-task job by the tests: join the job's process group and all-reduce the ranks."""
import torch


def probe() -> tuple[int, int, float]:
    import torch.distributed as dist

    from pae_lab.stages import distributed

    rank_info, _ = distributed.init(torch.device("cpu"))
    total = torch.tensor([float(rank_info.rank)])
    dist.all_reduce(total)
    rank_info.close()
    return rank_info.rank, rank_info.world, float(total.item())
