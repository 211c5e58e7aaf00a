"""IAM users for the access-denied test, made in moto's IAM backend.

Run against a moto server started with ``INITIAL_NO_AUTH_ACTION_COUNT=3``:
the first three requests (made here, unsigned-for-IAM) create the user
``admin`` with an allow-everything policy and its access key; from then on
moto enforces IAM, and the rest is done with admin's key: the user
``planner``, allowed only ``ec2:Describe*`` (what ``wgctl aws plan``
needs, not what ``sync`` needs), and its key.

Usage: ``python iam_users.py ENDPOINT_URL``; prints one JSON object:
``{"admin": [key_id, secret], "planner": [key_id, secret]}``.
"""

import json
import sys

import boto3


def policy(actions):
    return json.dumps(
        {
            "Version": "2012-10-17",
            "Statement": [{"Effect": "Allow", "Action": actions, "Resource": "*"}],
        }
    )


def iam(endpoint, key_id, secret):
    return boto3.client(
        "iam",
        region_name="us-east-1",
        endpoint_url=endpoint,
        aws_access_key_id=key_id,
        aws_secret_access_key=secret,
    )


def user(client, name, actions):
    client.create_user(UserName=name)
    client.put_user_policy(UserName=name, PolicyName=f"{name}-policy", PolicyDocument=policy(actions))
    key = client.create_access_key(UserName=name)["AccessKey"]
    return [key["AccessKeyId"], key["SecretAccessKey"]]


def main():
    endpoint = sys.argv[1]
    admin = user(iam(endpoint, "bootstrap", "bootstrap"), "admin", ["*"])
    planner = user(iam(endpoint, *admin), "planner", ["ec2:Describe*"])
    print(json.dumps({"admin": admin, "planner": planner}), flush=True)


if __name__ == "__main__":
    main()
