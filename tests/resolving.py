"""The recipe resolvers called the way the CLI calls them, for the *_recipes tests."""


def like_the_cli(resolver):
    """`resolver(config_file=, options=, set_items=)` as a function of keyword options: the
    command's flags by name, with `config_file` (--config) and `set_items` (--set) apart."""

    def resolve(*, config_file=None, set_items=None, **options):
        return resolver(config_file=config_file, options=options, set_items=set_items)

    return resolve
