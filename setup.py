"""mmbeit: BEiT for the OpenMMLab ecosystem."""
import os.path as osp
import shutil
from setuptools import find_packages, setup

HERE = osp.dirname(osp.abspath(__file__))


def copy_model_zoo() -> None:
    """Ship model-index.yml and configs/ inside the package (mmbeit/.mim), as OpenMMLab does.

    A wheel has no repository root; mmbeit.apis.inference finds the zoo there instead.
    Plain copies, no symlinks; the folder is git-ignored.
    """
    dst = osp.join(HERE, 'mmbeit', '.mim')
    if not osp.isfile(osp.join(HERE, 'model-index.yml')):
        return
    shutil.rmtree(dst, ignore_errors=True)
    shutil.copytree(osp.join(HERE, 'configs'), osp.join(dst, 'configs'))
    shutil.copy(osp.join(HERE, 'model-index.yml'), osp.join(dst, 'model-index.yml'))


copy_model_zoo()


def read_version() -> str:
    scope: dict = {}
    with open(osp.join(osp.dirname(__file__), 'mmbeit', 'version.py')) as f:
        exec(f.read(), scope)
    return scope['__version__']


def read_requirements(name: str) -> list:
    """Requirement lines of requirements/<name>; ``-r other.txt`` lines are expanded."""
    path = osp.join(osp.dirname(__file__), 'requirements', name)
    reqs = []
    with open(path) as f:
        for line in f:
            line = line.strip()
            if line.startswith('-r '):
                reqs += read_requirements(line[3:].strip())
            elif line and not line.startswith('#'):
                reqs.append(line)
    return reqs


setup(
    name='mmbeit',
    version=read_version(),
    description='BEiT (BERT Pre-Training of Image Transformers) for OpenMMLab',
    packages=find_packages(exclude=('tests', 'tests.*', 'configs', 'tools')),
    include_package_data=True,
    package_data={
        'mmbeit': [
            '.mim/model-index.yml', '.mim/configs/*.py', '.mim/configs/*/*.py',
            '.mim/configs/*/*/*.py', '.mim/configs/*/*.yml'
        ]
    },
    python_requires='>=3.9',
    install_requires=read_requirements('runtime.txt'),
    extras_require={
        'tests': read_requirements('tests.txt'),
        'deploy': read_requirements('deploy.txt')
    },
    license='Apache License 2.0',
)
